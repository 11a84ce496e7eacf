//! A database grant that lists roles binds the session on the server, not
//! by watching it: the step's connection logs in as a login role the host
//! makes for it, a member of the granted roles and of nothing else: it
//! has what they have together until it takes one of them, and nothing of
//! the pipeline's login (the shape of PostgREST's `authenticator`, which
//! Supabase's API logs in as). Whatever SQL the step sends —
//! `SET ROLE`, `set_config('role', …)`, `SET SESSION AUTHORIZATION`, a `DO`
//! block, a switch undone in the same call — PostgreSQL itself refuses a
//! role outside the grant, because the session's login is not a member of
//! it. The host's own tools (dumps, restores, the ledger's revert, the
//! shadow rehearsal) run as the pipeline's login, so a grant with roles may
//! not call them.
//!
//! Each bound login is made by the pipeline's login (which needs
//! `CREATEROLE`, as Supabase's `postgres` has), has a random password the
//! host alone knows (stored as a SCRAM verifier, so the server never sees
//! it in clear), one connection at most, and a `VALID UNTIL` minutes away;
//! the host drops it when the step ends, and drops expired ones nobody is
//! connected as whenever it makes a new one (a host killed mid-step).

use super::{DbTarget, SqlError, quote_ident};
use crate::pgconn::error_text;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Client;

/// Every bound login's name starts so: what the sweep looks for.
const PREFIX: &str = "deployhost_step_";

/// How long a bound login may log in after it is made (its one connection
/// is opened at once; an open session outlives `VALID UNTIL`).
const VALID_FOR: &str = "15 minutes";

/// The bound logins a step made, each with the connection of the login
/// that made it (kept open to drop it): dropped when the step ends
/// ([`drop_all`]).
pub type Made = Arc<Mutex<Vec<(String, Client)>>>;

/// What the pipeline's login is, when it can make a login bound to
/// `roles`: a member of each (a bound login has nothing its maker lacks)
/// and allowed to make roles. Read only: `doctor` asks it too.
pub struct Maker {
    pub login: String,
    /// `VALID UNTIL` for a login made now, in the server's clock.
    until: String,
}

pub async fn maker(admin: &Client, display: &str, roles: &[String]) -> Result<Maker, SqlError> {
    let row = admin
        .query_one(
            "SELECT session_user::text, rolcreaterole OR rolsuper, \
                    array(SELECT r FROM unnest($1::text[]) r WHERE NOT pg_has_role(session_user, r, 'MEMBER')), \
                    (now() + $2::text::interval)::text \
             FROM pg_roles WHERE rolname = session_user",
            &[&roles, &VALID_FOR],
        )
        .await
        .map_err(|e| bind_error(display, roles, "reading the login's roles", &e))?;
    let (login, can_create, not_member, until): (String, bool, Vec<String>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if !not_member.is_empty() {
        return Err(SqlError::RoleNotGranted(format!(
            "{display} logs in as `{login}`, which is not a member of {}: a grant's roles must be roles the pipeline's \
             login may take itself",
            not_member.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    if !can_create {
        return Err(SqlError::NotGranted(format!(
            "{display} logs in as `{login}`, which lacks CREATEROLE: a grant that lists roles runs its step as a login \
             role the host makes for it, a member of those roles only (Supabase's `postgres` has CREATEROLE); \
             grant it, or leave `roles:` out to give the step the login's whole power"
        )));
    }
    Ok(Maker { login, until })
}

fn bind_error(display: &str, roles: &[String], what: &str, e: &tokio_postgres::Error) -> SqlError {
    SqlError::Connection(format!(
        "cannot bind the session on {display} to the granted roles ({}): {what}: {}",
        roles.join(", "),
        error_text(e)
    ))
}

/// A connection for a step granted `roles` on `target`, logged in as a new
/// login role bound to them. `admin` is a connection of the pipeline's
/// login, kept to drop the bound login when the step ends. Returns the
/// connection and the bound login's name.
pub async fn connect(
    admin: Client,
    target: &DbTarget,
    roles: &[String],
    made: &Made,
) -> Result<(Client, String), SqlError> {
    sweep(&admin).await;
    let Maker { login, until } = maker(&admin, &target.display, roles).await?;
    let random = |e: std::io::Error| SqlError::Connection(format!("cannot read /dev/urandom: {e}"));
    let name = format!("{PREFIX}{}", hex::encode(crate::random::bytes::<6>().map_err(random)?));
    let password = hex::encode(crate::random::bytes::<32>().map_err(random)?);
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let members: Vec<String> = roles.iter().map(|r| quote_ident(r)).collect();
    let create = format!(
        "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
         CONNECTION LIMIT 1 PASSWORD '{verifier}' VALID UNTIL '{until}' IN ROLE {}",
        quote_ident(&name),
        members.join(", ")
    );
    admin
        .batch_execute(&create)
        .await
        .map_err(|e| bind_error(&target.display, roles, "making the step's login role", &e))?;
    let bound = as_login(target, &login, &name, &password);
    let client = crate::pgconn::connect(&bound).await.map_err(|e| SqlError::Connection(e.to_string()));
    if let Ok(client) = &client {
        same_settings(&admin, client).await;
    }
    if let Ok(mut made) = made.lock() {
        made.push((name.clone(), admin));
    }
    Ok((client?, name))
}

/// The session settings the pipeline's login gets at login from its role
/// (`ALTER ROLE postgres SET search_path …`, as Supabase sets it), given
/// to the bound session too: the step sees the same search path and
/// timeouts it always did. One the bound login may not set is left out.
async fn same_settings(admin: &Client, bound: &Client) {
    let Ok(rows) =
        admin.query("SELECT name, setting FROM pg_settings WHERE source IN ('user', 'database user')", &[]).await
    else {
        return;
    };
    for row in rows {
        let (name, value): (String, String) = (row.get(0), row.get(1));
        let _ = bound.execute("SELECT set_config($1, $2, false)", &[&name, &value]).await;
    }
}

/// `target` logging in as `name`: the same server, database and TLS. A
/// pooler's user names the project after the role (Supavisor's
/// `postgres.<ref>`): the bound login keeps that suffix.
fn as_login(target: &DbTarget, login: &str, name: &str, password: &str) -> DbTarget {
    let mut bound = target.clone();
    let url_user = target.config.get_user().unwrap_or(login);
    let suffix = url_user.strip_prefix(login).filter(|s| s.starts_with('.')).unwrap_or("");
    let user = format!("{name}{suffix}");
    bound.config.user(&user);
    bound.config.password(password);
    bound.display = match target.display.split_once('@') {
        Some((_, server)) => format!("{user}@{server}"),
        None => target.display.clone(),
    };
    bound.secrets.push(password.to_string());
    bound
}

/// Drops the bound logins a step made. Its connections are closed first
/// (the step's store is gone); a login still owning a temporary table
/// waits for its server process to end, a second at most.
pub async fn drop_all(made: &Made) {
    let made: Vec<(String, Client)> = made.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
    for (name, admin) in made {
        for _ in 0..10 {
            match drop_role(&admin, &name).await {
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => break,
            }
        }
    }
}

/// Drops bound logins left by a host that did not end its steps (killed):
/// expired, and nobody connected as them.
async fn sweep(admin: &Client) {
    let Ok(rows) = admin
        .query(
            "SELECT rolname::text FROM pg_roles r WHERE starts_with(rolname, $1) AND rolvaliduntil < now() \
             AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.usename = r.rolname)",
            &[&PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let _ = drop_role(admin, &name).await;
    }
}

async fn drop_role(admin: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(name))).await
}
