//! Download and upload policy as plain structs.
