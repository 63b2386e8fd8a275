//! The tables the stateful matches keep, as a gateway holds them across
//! reloads: `-m recent` and `-m hashlimit` tables by name, and the
//! connection table `-m connlimit` counts connections in.

use std::sync::Arc;

use crate::connlimit::ConnlimitTable;
use crate::conntrack::Conntrack;
use crate::hashlimit::HashlimitTables;
use crate::recent::RecentTables;

/// Tuples a `-m connlimit` table holds without a connection table to size
/// it by (a rule set compiled only to be checked).
const CONNLIMIT_DEFAULT_CONNS: usize = 65_536;

#[derive(Default)]
pub struct MatchTables {
    pub recent: RecentTables,
    pub hashlimit: HashlimitTables,
    /// The connection table `-m connlimit` checks its tuples against.
    pub conntrack: Option<Arc<Conntrack>>,
}

impl MatchTables {
    /// The tables of a gateway whose connections are in `conntrack`.
    pub fn new(conntrack: Arc<Conntrack>) -> MatchTables {
        MatchTables {
            conntrack: Some(conntrack),
            ..MatchTables::default()
        }
    }

    /// A new `-m connlimit` table (one per rule, as Linux's), for as many
    /// tuples as the connection table has entries.
    pub fn connlimit_table(&self) -> ConnlimitTable {
        let conns = self
            .conntrack
            .as_ref()
            .map_or(CONNLIMIT_DEFAULT_CONNS, |c| c.max_entries());
        ConnlimitTable::new(conns, self.conntrack.clone())
    }
}

impl std::fmt::Debug for MatchTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchTables")
            .field("recent", &self.recent)
            .field("hashlimit", &self.hashlimit)
            .finish_non_exhaustive()
    }
}
