//! A stand-in Odoo server on 127.0.0.1 speaking the external API's JSON-RPC
//! as Odoo documents it: `POST /jsonrpc` with a JSON-RPC 2.0 `call` to the
//! `common` service (`version`, `authenticate`) and the `object` service
//! (`execute_kw` on `ir.module.module`: `update_list`, `search_read`,
//! `button_immediate_install`, `button_immediate_upgrade`). Each database
//! has its own modules; every call is recorded by the server.

use super::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The uid `authenticate` answers for the deploy login.
pub const UID: i64 = 2;

/// A module in one database: id, state, version installed in the
/// database, version of the code in the server's addons path.
#[derive(Clone, Debug)]
pub struct Module {
    pub id: i64,
    pub state: &'static str,
    pub installed: &'static str,
    pub on_disk: &'static str,
}

/// One `execute_kw` (or other) call the server received.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: String,
    /// The RPC method; for `execute_kw`, the model's method (`button_immediate_upgrade`).
    pub method: String,
    pub args: Vec<Value>,
}

pub struct FakeOdoo {
    pub server: Server,
    /// Database → module name → module.
    pub modules: Arc<Mutex<BTreeMap<String, BTreeMap<String, Module>>>>,
}

impl FakeOdoo {
    /// A server where `login` with `api_key` may log in to each of `databases`.
    pub fn start(login: &'static str, api_key: &'static str, databases: Vec<(&str, Vec<(&str, Module)>)>) -> FakeOdoo {
        let modules: BTreeMap<String, BTreeMap<String, Module>> = databases
            .into_iter()
            .map(|(db, mods)| (db.to_string(), mods.into_iter().map(|(n, m)| (n.to_string(), m)).collect()))
            .collect();
        let modules = Arc::new(Mutex::new(modules));
        let shared = modules.clone();
        let server = Server::start(move |r, _| rpc(&mut shared.lock().unwrap(), login, api_key, r));
        FakeOdoo { server, modules }
    }

    /// Every JSON-RPC call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.server
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .map(|body| {
                let params = &body["params"];
                let args = params["args"].as_array().cloned().unwrap_or_default();
                let service = params["service"].as_str().unwrap_or_default().to_string();
                let method = match params["method"].as_str().unwrap_or_default() {
                    "execute_kw" => args.get(4).and_then(Value::as_str).unwrap_or_default().to_string(),
                    other => other.to_string(),
                };
                Call { service, method, args }
            })
            .collect()
    }

    /// The method names of [`FakeOdoo::calls`].
    pub fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.method).collect()
    }

    pub fn state(&self, database: &str, module: &str) -> Module {
        self.modules.lock().unwrap()[database][module].clone()
    }
}

fn rpc_error(id: &Value, name: &str, message: &str) -> Response {
    Response::json(
        200,
        &json!({ "jsonrpc": "2.0", "id": id, "error": { "code": 200, "message": "Odoo Server Error",
            "data": { "name": name, "message": message, "arguments": [message], "debug": "Traceback (most recent call last): ..." } } }),
    )
}

fn rpc(databases: &mut BTreeMap<String, BTreeMap<String, Module>>, login: &str, key: &str, r: &Request) -> Response {
    if r.method != "POST" || r.path != "/jsonrpc" {
        return Response::status(404);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return rpc_error(&Value::Null, "werkzeug.exceptions.BadRequest", "the body is not JSON");
    };
    let id = body["id"].clone();
    if body["jsonrpc"] != "2.0" || body["method"] != "call" {
        return rpc_error(&id, "werkzeug.exceptions.BadRequest", "not a JSON-RPC 2.0 call");
    }
    let params = &body["params"];
    let args = params["args"].as_array().cloned().unwrap_or_default();
    let ok = |result: Value| Response::json(200, &json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    let known = |db: &Value| db.as_str().is_some_and(|db| databases.contains_key(db));
    match (params["service"].as_str(), params["method"].as_str()) {
        (Some("common"), Some("version")) => ok(
            json!({ "server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""], "server_serie": "17.0", "protocol_version": 1 }),
        ),
        (Some("common"), Some("authenticate")) => {
            let valid = args.len() == 4 && known(&args[0]) && args[1] == login && args[2] == key;
            ok(if valid { json!(UID) } else { json!(false) })
        }
        (Some("object"), Some("execute_kw")) => {
            if args.len() < 6 || !known(&args[0]) || args[1] != UID || args[2] != key {
                return rpc_error(&id, "odoo.exceptions.AccessDenied", "Access Denied");
            }
            if args[3] != "ir.module.module" {
                return rpc_error(&id, "builtins.KeyError", &format!("{}", args[3]));
            }
            let modules = databases.get_mut(args[0].as_str().unwrap()).unwrap();
            let call = &args[5];
            match args[4].as_str().unwrap_or_default() {
                "update_list" => ok(json!([0, 0])),
                "search_read" => {
                    let Some(names) = call[0][0][2].as_array() else {
                        return rpc_error(&id, "builtins.ValueError", "expected a domain [('name', 'in', [...])]");
                    };
                    let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                    let rows: Vec<Value> = modules
                        .iter()
                        .filter(|(n, _)| names.contains(&n.as_str()))
                        .map(|(n, m)| json!({ "id": m.id, "name": n, "state": m.state, "latest_version": m.installed }))
                        .collect();
                    ok(Value::Array(rows))
                }
                method @ ("button_immediate_install" | "button_immediate_upgrade") => {
                    let ids: Vec<i64> =
                        call[0].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
                    for m in modules.values_mut().filter(|m| ids.contains(&m.id)) {
                        let expected = if method == "button_immediate_install" { "uninstalled" } else { "installed" };
                        if m.state != expected {
                            return rpc_error(
                                &id,
                                "odoo.exceptions.UserError",
                                &format!("{method} on a module {}", m.state),
                            );
                        }
                        m.state = "installed";
                        m.installed = m.on_disk;
                    }
                    ok(json!({ "type": "ir.actions.client", "tag": "reload" }))
                }
                other => rpc_error(&id, "builtins.AttributeError", &format!("type object has no attribute '{other}'")),
            }
        }
        _ => rpc_error(&id, "werkzeug.exceptions.NotFound", "unknown service or method"),
    }
}
