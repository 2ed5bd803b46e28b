//! The starter's library half: the wire type `Plan`, and `validate`, the only way to a
//! `ValidatedPlan`. The frontend links this to give early, friendly errors; the starter
//! binary calls `validate` again and trusts only its own verdict.

pub mod plan;
