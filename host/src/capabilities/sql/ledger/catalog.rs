//! The catalog as the change ledger sees it: every object a migration can
//! create, alter or drop, with what is needed to put it back, read in one
//! query inside the migration's own transaction before and after its
//! statements. An object's catalog row carries in `xmin` the transaction
//! that last wrote it, so `mine` tells the migration's own changes from
//! those the platform's roles commit meanwhile (a Storage upgrade adding a
//! trigger on `storage.objects` while the deploy runs is not the deploy's).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// The kinds of object the ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Schema,
    Extension,
    Type,
    Sequence,
    Function,
    Table,
    Column,
    View,
    Matview,
    Constraint,
    Index,
    Trigger,
    Policy,
    DefaultAcl,
    Publication,
    EventTrigger,
    Comment,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        serde_json::from_value(Value::String(text.to_string())).ok()
    }

    /// As people read it: `default privileges`, `event trigger`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Extension => "extension",
            Kind::Type => "type",
            Kind::Sequence => "sequence",
            Kind::Function => "function",
            Kind::Table => "table",
            Kind::Column => "column",
            Kind::View => "view",
            Kind::Matview => "materialized view",
            Kind::Constraint => "constraint",
            Kind::Index => "index",
            Kind::Trigger => "trigger",
            Kind::Policy => "policy",
            Kind::DefaultAcl => "default privileges",
            Kind::Publication => "publication",
            Kind::EventTrigger => "event trigger",
            Kind::Comment => "comment",
        }
    }
}

/// One object: its kind, its name as SQL writes it, and its definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub kind: Kind,
    pub key: String,
    pub state: Value,
}

impl Object {
    pub fn text(&self, field: &str) -> Option<&str> {
        self.state.get(field).and_then(Value::as_str)
    }

    pub fn flag(&self, field: &str) -> bool {
        self.state.get(field).and_then(Value::as_bool).unwrap_or(false)
    }

    /// The catalog's own id of the object: the same across a rename, new
    /// when it is dropped and created again.
    fn oid(&self) -> Option<&str> {
        self.text("oid")
    }

    /// The definition without its id, to compare.
    fn definition(&self) -> Value {
        let mut s = self.state.clone();
        if let Some(m) = s.as_object_mut() {
            m.remove("oid");
            m.remove("last_value");
        }
        s
    }
}

/// What one migration did to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Created { object: Object },
    Dropped { object: Object },
    Altered { before: Object, after: Object },
}

impl Change {
    pub fn kind(&self) -> Kind {
        match self {
            Change::Created { object } | Change::Dropped { object } => object.kind,
            Change::Altered { after, .. } => after.kind,
        }
    }

    /// One line for people: `created table public.tags`.
    pub fn describe(&self) -> String {
        match self {
            Change::Created { object } => format!("created {} {}", object.kind.label(), object.key),
            Change::Dropped { object } => format!("dropped {} {}", object.kind.label(), object.key),
            Change::Altered { before, after } if before.key != after.key => {
                format!("renamed {} {} to {}", after.kind.label(), before.key, after.key)
            }
            Change::Altered { after, .. } => format!("altered {} {}", after.kind.label(), after.key),
        }
    }
}

/// Schemas no snapshot reads: PostgreSQL's own and other sessions' temporary ones.
const SKIP_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
     AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'";

/// Schemas: owner, privileges.
const SCHEMAS: &str = r#"
SELECT 'schema', quote_ident(n.nspname), n.xmin = me.x,
  jsonb_build_object('oid', n.oid::text, 'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner),
    'acl', coalesce(n.nspacl, acldefault('n', n.nspowner))::text[])
FROM pg_namespace n JOIN ns USING (oid), me
"#;

/// Tables, views, materialized views, sequences: owner, privileges, RLS switches,
/// a view's definition, a sequence's settings, last value and owning column.
const RELATIONS: &str = r#"
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'matview' WHEN 'S' THEN 'sequence' ELSE 'table' END,
  format('%I.%I', ns.nspname, c.relname), c.xmin = me.x,
  jsonb_build_object('oid', c.oid::text, 'schema', ns.nspname, 'name', c.relname, 'owner', pg_get_userbyid(c.relowner),
    'acl', coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))::text[],
    'rls', c.relrowsecurity, 'force_rls', c.relforcerowsecurity, 'partitioned', c.relkind = 'p',
    'unlogged', c.relpersistence = 'u',
    'view', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
    'sequence', CASE WHEN c.relkind = 'S' THEN (SELECT jsonb_build_object('type', format_type(s.seqtypid, NULL),
        'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache,
        'cycle', s.seqcycle) FROM pg_sequence s WHERE s.seqrelid = c.oid) END,
    'last_value', CASE WHEN c.relkind = 'S' AND has_sequence_privilege(c.oid, 'SELECT')
        THEN (SELECT last_value FROM pg_sequences q WHERE q.schemaname = ns.nspname AND q.sequencename = c.relname) END,
    'owned_by', CASE WHEN c.relkind = 'S' THEN (SELECT format('%I.%I.%I', tn.nspname, t.relname, a.attname)
        FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i') LIMIT 1) END)
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace, me
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND NOT EXISTS (SELECT 1 FROM not_ext e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid)
"#;

/// Columns: type, default, nullability, identity, generated expression, collation, privileges.
const COLUMNS: &str = r#"
SELECT 'column', format('%I.%I.%I', ns.nspname, c.relname, a.attname), a.xmin = me.x OR coalesce(ad.xmin = me.x, false),
  jsonb_build_object('oid', c.oid::text || '.' || a.attnum, 'schema', ns.nspname, 'table', c.relname,
    'table_key', format('%I.%I', ns.nspname, c.relname), 'name', a.attname,
    'num', a.attnum, 'type', format_type(a.atttypid, a.atttypmod), 'notnull', a.attnotnull,
    'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
    'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
    'identity', nullif(a.attidentity, ''),
    'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
        (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
         WHERE co.oid = a.attcollation) END,
    'acl', a.attacl::text[])
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum, me
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND NOT EXISTS (SELECT 1 FROM not_ext e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid)
"#;

/// Constraints of tables and domains (`NOT NULL` ones are the columns').
const CONSTRAINTS: &str = r#"
SELECT 'constraint', format('%I.%I.%I', ns.nspname, coalesce(c.relname, ty.typname), co.conname), co.xmin = me.x,
  jsonb_build_object('oid', co.oid::text, 'schema', ns.nspname, 'table', c.relname,
    'table_key', CASE WHEN c.relname IS NOT NULL THEN format('%I.%I', ns.nspname, c.relname) END,
    'domain_key', CASE WHEN ty.typname IS NOT NULL THEN format('%I.%I', ns.nspname, ty.typname) END,
    'domain', ty.typname, 'name', co.conname,
    'def', pg_get_constraintdef(co.oid), 'type', co.contype)
FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace LEFT JOIN pg_class c ON c.oid = co.conrelid
  LEFT JOIN pg_type ty ON ty.oid = co.contypid, me
WHERE (co.conrelid <> 0 OR co.contypid <> 0) AND co.contype <> 'n'
"#;

/// Indexes not behind a constraint.
const INDEXES: &str = r#"
SELECT 'index', format('%I.%I', ns.nspname, ic.relname), ic.xmin = me.x,
  jsonb_build_object('oid', ic.oid::text, 'schema', ns.nspname, 'name', ic.relname, 'def', pg_get_indexdef(i.indexrelid),
    'table_key', format('%I.%I', ns.nspname, tc.relname))
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
  JOIN ns ON ns.oid = ic.relnamespace, me
WHERE tc.relkind IN ('r', 'p', 'm')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid AND co.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT 1 FROM not_ext e WHERE e.classid = 'pg_class'::regclass AND e.objid = tc.oid)
"#;

/// Functions and procedures: definition, result, owner, privileges.
const FUNCTIONS: &str = r#"
SELECT 'function', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), p.xmin = me.x,
  jsonb_build_object('oid', p.oid::text, 'schema', ns.nspname, 'name', p.proname,
    'args', pg_get_function_identity_arguments(p.oid), 'kind', p.prokind, 'owner', pg_get_userbyid(p.proowner),
    'result', pg_get_function_result(p.oid),
    'def', CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END,
    'acl', coalesce(p.proacl, acldefault('f', p.proowner))::text[])
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace, me
WHERE NOT EXISTS (SELECT 1 FROM not_ext e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid)
"#;

/// Triggers (not the internal ones of foreign keys).
const TRIGGERS: &str = r#"
SELECT 'trigger', format('%I.%I.%I', ns.nspname, c.relname, tg.tgname), tg.xmin = me.x,
  jsonb_build_object('oid', tg.oid::text, 'schema', ns.nspname, 'table', c.relname,
    'table_key', format('%I.%I', ns.nspname, c.relname), 'name', tg.tgname,
    'def', pg_get_triggerdef(tg.oid), 'enabled', tg.tgenabled::text)
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN ns ON ns.oid = c.relnamespace, me
WHERE NOT tg.tgisinternal
"#;

/// Row level security policies.
const POLICIES: &str = r#"
SELECT 'policy', format('%I.%I.%I', ns.nspname, c.relname, po.polname), po.xmin = me.x,
  jsonb_build_object('oid', po.oid::text, 'schema', ns.nspname, 'table', c.relname,
    'table_key', format('%I.%I', ns.nspname, c.relname), 'name', po.polname,
    'cmd', po.polcmd::text, 'permissive', po.polpermissive,
    'roles', (SELECT coalesce(jsonb_agg(CASE WHEN r = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(r)) END ORDER BY 1), '[]')
        FROM unnest(po.polroles) r),
    'using', pg_get_expr(po.polqual, po.polrelid), 'check', pg_get_expr(po.polwithcheck, po.polrelid))
FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid JOIN ns ON ns.oid = c.relnamespace, me
"#;

/// Enum, domain and composite types.
const TYPES: &str = r#"
SELECT 'type', format('%I.%I', ns.nspname, t.typname),
  t.xmin = me.x OR EXISTS (SELECT 1 FROM pg_enum e WHERE e.enumtypid = t.oid AND e.xmin = me.x),
  jsonb_build_object('oid', t.oid::text, 'schema', ns.nspname, 'name', t.typname, 'kind', t.typtype::text,
    'owner', pg_get_userbyid(t.typowner),
    'labels', CASE WHEN t.typtype = 'e' THEN (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
        WHERE e.enumtypid = t.oid) END,
    'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
    'notnull', t.typnotnull, 'default', t.typdefault,
    'attributes', CASE WHEN t.typtype = 'c' THEN (SELECT jsonb_agg(format('%I %s', a.attname,
        format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) FROM pg_attribute a
        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
    'acl', coalesce(t.typacl, acldefault('T', t.typowner))::text[])
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace, me
WHERE (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
  AND NOT EXISTS (SELECT 1 FROM not_ext e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid)
"#;

/// Extensions, with their schema and version.
const EXTENSIONS: &str = r#"
SELECT 'extension', quote_ident(e.extname), e.xmin = me.x,
  jsonb_build_object('oid', e.oid::text, 'name', e.extname, 'schema', n.nspname, 'version', e.extversion)
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace, me
"#;

/// Default privileges, database-wide (no schema) or per schema, with the
/// built-in default they replace.
const DEFAULT_ACLS: &str = r#"
SELECT 'default_acl', format('%s in %s on %s', quote_ident(pg_get_userbyid(d.defaclrole)),
    coalesce(quote_ident(n.nspname), 'every schema'), d.defaclobjtype), d.xmin = me.x,
  jsonb_build_object('role', pg_get_userbyid(d.defaclrole), 'schema', n.nspname, 'objtype', d.defaclobjtype::text,
    'acl', d.defaclacl::text[],
    'default', CASE WHEN d.defaclnamespace = 0 THEN acldefault(d.defaclobjtype, d.defaclrole)::text[]
        ELSE ARRAY[]::text[] END)
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, me
"#;

/// Publications and their tables.
const PUBLICATIONS: &str = r#"
SELECT 'publication', quote_ident(p.pubname),
  p.xmin = me.x OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.xmin = me.x),
  jsonb_build_object('oid', p.oid::text, 'name', p.pubname, 'all_tables', p.puballtables,
    'publish', concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
        CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END),
    'tables', (SELECT coalesce(jsonb_agg(format('%I.%I', n.nspname, c.relname) ORDER BY 1), '[]')
        FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.prpubid = p.oid))
FROM pg_publication p, me
"#;

/// Event triggers.
const EVENT_TRIGGERS: &str = r#"
SELECT 'event_trigger', quote_ident(e.evtname), e.xmin = me.x,
  jsonb_build_object('oid', e.oid::text, 'name', e.evtname, 'event', e.evtevent, 'function', e.evtfoid::regproc::text,
    'tags', e.evttags, 'enabled', e.evtenabled::text)
FROM pg_event_trigger e, me
"#;

/// Comments on the objects above.
const COMMENTS: &str = r#"
SELECT 'comment', format('%s %s', o.type, o.identity), d.xmin = me.x,
  jsonb_build_object('type', o.type, 'identity', o.identity, 'text', d.description)
FROM pg_description d CROSS JOIN LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o, me
WHERE d.classoid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_namespace'::regclass, 'pg_type'::regclass,
    'pg_policy'::regclass, 'pg_trigger'::regclass, 'pg_constraint'::regclass)
  AND coalesce(o.schema, o.name) IS NOT NULL
  AND coalesce(o.schema, o.name) NOT IN ('pg_catalog', 'information_schema')
"#;

/// One row per object: kind, key, whether this transaction wrote it, state.
fn snapshot_sql() -> String {
    let ns = format!("SELECT oid, nspname FROM pg_namespace n WHERE {SKIP_SCHEMAS}");
    let kinds = [
        SCHEMAS,
        RELATIONS,
        COLUMNS,
        CONSTRAINTS,
        INDEXES,
        FUNCTIONS,
        TRIGGERS,
        POLICIES,
        TYPES,
        EXTENSIONS,
        DEFAULT_ACLS,
        PUBLICATIONS,
        EVENT_TRIGGERS,
        COMMENTS,
    ];
    format!(
        "WITH me AS (SELECT pg_current_xact_id()::xid AS x), ns AS ({ns}),\n\
         not_ext AS (SELECT objid, classid FROM pg_depend WHERE deptype = 'e')\n{}",
        kinds.join("\nUNION ALL\n")
    )
}

/// The catalog now, as this transaction sees it: each object and whether
/// this transaction wrote its catalog row.
pub struct Snapshot {
    objects: BTreeMap<(Kind, String), (Object, bool)>,
}

impl Snapshot {
    pub async fn read(client: &Client) -> Result<Snapshot, tokio_postgres::Error> {
        let rows = client.query(&snapshot_sql(), &[]).await?;
        let mut objects = BTreeMap::new();
        for row in rows {
            let (kind, key, mine, state): (String, String, Option<bool>, Value) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let Some(kind) = Kind::parse(&kind) else { continue };
            objects.insert((kind, key.clone()), (Object { kind, key, state }, mine.unwrap_or(false)));
        }
        Ok(Snapshot { objects })
    }

    pub fn get(&self, kind: Kind, key: &str) -> Option<&Object> {
        self.objects.get(&(kind, key.to_string())).map(|(o, _)| o)
    }

    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values().map(|(o, _)| o)
    }
}

/// What the transaction changed between `before` and `after`: objects it
/// created or altered carry its transaction id; anything else that
/// appeared or changed meanwhile was another session's and is left out.
/// An object gone from the catalog was dropped. A rename keeps the
/// object's id and is one alteration.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut dropped: Vec<&Object> = Vec::new();
    for ((kind, key), (old, _)) in &before.objects {
        match after.objects.get(&(*kind, key.clone())) {
            None => dropped.push(old),
            Some((new, mine)) => {
                if old.oid().is_some() && old.oid() != new.oid() {
                    // Dropped and created again under the same name.
                    dropped.push(old);
                    if *mine {
                        changes.push(Change::Created { object: new.clone() });
                    }
                } else if *mine && old.definition() != new.definition() {
                    changes.push(Change::Altered { before: old.clone(), after: new.clone() });
                }
            }
        }
    }
    let mut created: Vec<&Object> = after
        .objects
        .iter()
        .filter(|(k, (_, mine))| *mine && !before.objects.contains_key(k))
        .map(|(_, (o, _))| o)
        .collect();
    for old in dropped {
        let renamed = old.oid().and_then(|oid| created.iter().position(|n| n.kind == old.kind && n.oid() == Some(oid)));
        match renamed {
            Some(i) => {
                let new = created.remove(i);
                changes.push(Change::Altered { before: old.clone(), after: new.clone() });
            }
            None => changes.push(Change::Dropped { object: old.clone() }),
        }
    }
    changes.extend(created.into_iter().map(|o| Change::Created { object: o.clone() }));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(objects: &[(Kind, &str, &str, bool, serde_json::Value)]) -> Snapshot {
        Snapshot {
            objects: objects
                .iter()
                .map(|(kind, key, oid, mine, extra)| {
                    let mut state = serde_json::json!({ "oid": oid });
                    state.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
                    ((*kind, key.to_string()), (Object { kind: *kind, key: key.to_string(), state }, *mine))
                })
                .collect(),
        }
    }

    #[test]
    fn only_what_this_transaction_wrote_is_its_change() {
        let none = serde_json::json!({});
        let before = snapshot(&[
            (Kind::Table, "public.notes", "1", false, none.clone()),
            (Kind::Table, "public.old", "2", false, none.clone()),
            (Kind::Trigger, "storage.buckets.t", "3", false, serde_json::json!({ "def": "v1" })),
        ]);
        let after = snapshot(&[
            (Kind::Table, "public.notes", "1", false, none.clone()),
            (Kind::Table, "public.tags", "4", true, none.clone()),
            // The platform's: appeared or changed meanwhile, not by this transaction.
            (Kind::Trigger, "storage.buckets.t", "3", false, serde_json::json!({ "def": "v2" })),
            (Kind::Trigger, "storage.objects.guard", "5", false, none.clone()),
        ]);
        let changes = diff(&before, &after);
        let described: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(described, vec!["dropped table public.old", "created table public.tags"]);
    }

    #[test]
    fn a_rename_keeps_its_id_and_is_one_alteration() {
        let none = serde_json::json!({});
        let before = snapshot(&[(Kind::Table, "public.a", "7", false, none.clone())]);
        let after = snapshot(&[(Kind::Table, "public.b", "7", true, none.clone())]);
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].describe(), "renamed table public.a to public.b");
        // Dropped and created again under the same name: two changes.
        let again = snapshot(&[(Kind::Table, "public.a", "8", true, none)]);
        let described: Vec<String> = diff(&before, &again).iter().map(Change::describe).collect();
        assert_eq!(described, vec!["created table public.a", "dropped table public.a"]);
    }
}
