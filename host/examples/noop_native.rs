//! The native baseline of the step-start benchmark: a program that does
//! nothing, started with fork+exec where deployhost instantiates `noop`.

fn main() {}
