//! Cloud replicas: a path in a public cloud, reached through Apache OpenDAL, as one side of a
//! task the engine runs like any other (DESIGN.md "Replicas").

pub mod crypt;
