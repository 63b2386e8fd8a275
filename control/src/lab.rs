//! The namespace lab: namespaces, veth pairs, addresses, routes, commands run inside; removed on drop.
