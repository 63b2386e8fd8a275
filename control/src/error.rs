//! Errors of the rule language: each names the file, line and column, and
//! says what is wrong.

use std::fmt;

/// What is wrong with a rule file, at one place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown option '{option}'{hint}")]
    UnknownOption { option: String, hint: String },
    /// `supported`: the matches the language has (the parser's list).
    #[error("unknown match '{name}'; supported: {}", supported.join(", "))]
    UnknownMatch {
        name: String,
        supported: &'static [&'static str],
    },
    /// `supported`: the targets the language has (the parser's list).
    #[error("unknown target '{name}'; supported: {}, or a user chain of this table", supported.join(", "))]
    UnknownTarget {
        name: String,
        supported: &'static [&'static str],
    },
    /// A target iptables has that xdpgw does not have yet.
    #[error("target '{name}' is not supported yet; supported: {}, or a user chain of this table", supported.join(", "))]
    UnsupportedTarget {
        name: String,
        supported: &'static [&'static str],
    },
    #[error("bad value '{value}' for {option}: {expected}")]
    BadValue {
        option: String,
        value: String,
        expected: String,
    },
    #[error("option {option} needs a value")]
    MissingValue { option: String },
    #[error("'!' cannot be used with {option}")]
    CannotInvert { option: String },
    #[error("{option} given more than once")]
    Duplicate { option: String },
    #[error("{0}")]
    Semantic(String),
    #[error("cannot read: {0}")]
    Io(String),
}

/// One error at `file:line:column`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub kind: RuleErrorKind,
}

impl RuleError {
    /// An error at a place in a file not yet named (see [`RuleErrors::in_file`]).
    pub fn at(line: u32, column: u32, kind: RuleErrorKind) -> RuleError {
        RuleError {
            file: String::new(),
            line,
            column,
            kind,
        }
    }
}

/// `file:line:column: message`, or `file: message` for an error about the
/// whole file (line 0: it could not be read).
pub(crate) fn fmt_at(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    line: u64,
    column: u64,
    message: &dyn fmt::Display,
) -> fmt::Result {
    if line == 0 {
        write!(f, "{file}: {message}")
    } else {
        write!(f, "{file}:{line}:{column}: {message}")
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_at(
            f,
            &self.file,
            self.line.into(),
            self.column.into(),
            &self.kind,
        )
    }
}

impl std::error::Error for RuleError {}

/// Every error found in a rule file (a file with any error loads nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl RuleErrors {
    pub fn in_file(mut self, file: &str) -> RuleErrors {
        for e in &mut self.0 {
            e.file = file.to_string();
        }
        self
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &RuleError> {
        self.0.iter()
    }
}

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}
