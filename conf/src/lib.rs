//! apptainer.conf and the other admin-owned files, parsed strictly.

pub mod paths;
