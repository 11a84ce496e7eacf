//! Databases: a step names a database; the host holds the connection. This
//! release declares the interface and denies every database (audited); the
//! PostgreSQL implementation comes with the `databases:` pipeline section.

use crate::bindings::deployhost::plugin::sql::{
    Host, HostConnection, QueryResult, SqlError, Value,
};
use crate::runner::StepState;
use serde_json::json;
use wasmtime::component::Resource;

/// An open connection handed to a step.
pub struct Connection;

fn not_open() -> SqlError {
    SqlError::Connection("no database connection is open".into())
}

impl Host for StepState {
    async fn open(&mut self, database: String) -> Result<Resource<Connection>, SqlError> {
        let caps = &self.caps;
        caps.audit.record(
            Some(&caps.step),
            "sql.denied",
            json!({ "database": database }),
        );
        Err(SqlError::NotGranted(format!(
            "step `{}` may not open database `{database}`: no database is granted to it",
            caps.step
        )))
    }
}

impl HostConnection for StepState {
    async fn query(
        &mut self,
        _: Resource<Connection>,
        _: String,
        _: Vec<Value>,
    ) -> Result<QueryResult, SqlError> {
        Err(not_open())
    }
    async fn execute(
        &mut self,
        _: Resource<Connection>,
        _: String,
        _: Vec<Value>,
    ) -> Result<u64, SqlError> {
        Err(not_open())
    }
    async fn batch(&mut self, _: Resource<Connection>, _: String) -> Result<(), SqlError> {
        Err(not_open())
    }
    async fn transaction(
        &mut self,
        _: Resource<Connection>,
        _: Vec<String>,
    ) -> Result<(), SqlError> {
        Err(not_open())
    }
    async fn set_role(&mut self, _: Resource<Connection>, _: String) -> Result<(), SqlError> {
        Err(not_open())
    }
    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
