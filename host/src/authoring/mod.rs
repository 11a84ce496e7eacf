//! Writing plugins: `deployhost plugin new` scaffolds one that builds on
//! its own (the WIT world and the SDK travel inside this binary), and
//! `deployhost plugin build` compiles it to a component and says how to pin it.

mod compile;
mod scaffold;

pub use compile::{Built, build};
pub use scaffold::{Lang, create};
