//! Environment: a step has none. Host variables (tokens, database URLs) are
//! never passed in; a step that asks is told "nothing" and the ask audited.

use super::StepStore;
use crate::audit::{Denial, Record};
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

const ENVIRONMENT: &str = "wasi:cli/environment@0.2.12";

pub fn add_to_linker<S: StepStore>(linker: &mut Linker<S>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(ENVIRONMENT)?.func_wrap("get-environment", |store: StoreContextMut<S>, (): ()| {
        let caps = store.data().caps();
        let reason = "steps get no environment variables; pass values with `with:` or secrets";
        caps.audit
            .record(Some(&caps.step), Record::EnvDenied(Denial { reason: Some(reason.into()), ..Denial::default() }));
        Ok((Vec::<(String, String)>::new(),))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
