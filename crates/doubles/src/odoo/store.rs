//! Records in memory, with an undo journal so a call that raises leaves nothing behind
//! (each Odoo call is one transaction).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::clock::{Clock, format_datetime};
use super::schema::{self, Kind};

pub(crate) type Rec = Map<String, Value>;

#[derive(Debug, Default)]
pub(crate) struct Table {
    next_id: i64,
    rows: BTreeMap<i64, Rec>,
}

#[derive(Debug)]
enum Undo {
    Row(&'static str, i64, Option<Rec>),
    NextId(&'static str, i64),
    Seq(String, u64),
}

#[derive(Debug)]
pub(crate) struct Store {
    tables: HashMap<&'static str, Table>,
    seqs: HashMap<String, u64>,
    pub(crate) clock: Clock,
    undo: Vec<Undo>,
}

/// `false` when absent, as Odoo reads empty fields.
pub(crate) fn falsy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

pub(crate) fn as_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

pub(crate) fn as_f64(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

impl Store {
    pub(crate) fn new() -> Self {
        let mut tables = HashMap::new();
        for m in schema::MODELS {
            tables.insert(m.name, Table { next_id: 1, rows: BTreeMap::new() });
        }
        Self { tables, seqs: HashMap::new(), clock: Clock::new(), undo: Vec::new() }
    }

    /// Start a transaction: forget the previous call's undo journal.
    pub(crate) fn begin(&mut self) {
        self.undo.clear();
    }

    /// Undo everything since [`Store::begin`].
    pub(crate) fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Row(model, id, old) => {
                    let rows = &mut self.tables.get_mut(model).unwrap().rows;
                    match old {
                        Some(rec) => rows.insert(id, rec),
                        None => rows.remove(&id),
                    };
                }
                Undo::NextId(model, next) => self.tables.get_mut(model).unwrap().next_id = next,
                Undo::Seq(key, old) => {
                    self.seqs.insert(key, old);
                }
            }
        }
    }

    fn table(&self, model: &str) -> &Table {
        self.tables.get(model).expect("model checked by the caller")
    }

    fn key(model: &str) -> &'static str {
        schema::model(model).expect("model checked by the caller").name
    }

    /// The next number of a sequence (`S`, `WH/OUT`, `INV/2026`, …), from 1.
    pub(crate) fn next_seq(&mut self, key: &str) -> u64 {
        let cur = self.seqs.get(key).copied().unwrap_or(0);
        self.undo.push(Undo::Seq(key.to_string(), cur));
        self.seqs.insert(key.to_string(), cur + 1);
        cur + 1
    }

    pub(crate) fn now_string(&mut self) -> String {
        let t = self.clock.now();
        format_datetime(t)
    }

    /// Insert a row as given (with `create_date`/`write_date`), returning its id.
    pub(crate) fn insert(&mut self, model: &str, mut rec: Rec) -> i64 {
        let key = Self::key(model);
        let now = self.now_string();
        let t = self.tables.get_mut(key).unwrap();
        let id = t.next_id;
        self.undo.push(Undo::NextId(key, t.next_id));
        t.next_id += 1;
        rec.insert("id".into(), json!(id));
        rec.insert("create_date".into(), json!(now));
        rec.insert("write_date".into(), json!(now));
        t.rows.insert(id, rec);
        self.undo.push(Undo::Row(key, id, None));
        id
    }

    /// Insert with a fixed id (seed data such as Odoo's stock locations).
    pub(crate) fn insert_with_id(&mut self, model: &str, id: i64, mut rec: Rec) {
        let key = Self::key(model);
        let now = self.now_string();
        let t = self.tables.get_mut(key).unwrap();
        rec.insert("id".into(), json!(id));
        rec.insert("create_date".into(), json!(now));
        rec.insert("write_date".into(), json!(now));
        t.rows.insert(id, rec);
        t.next_id = t.next_id.max(id + 1);
    }

    /// Set fields on a row and bump its `write_date`.
    pub(crate) fn set(&mut self, model: &str, id: i64, vals: &[(&str, Value)]) {
        let key = Self::key(model);
        let now = self.now_string();
        let row = self.tables.get_mut(key).unwrap().rows.get_mut(&id).expect("row checked by the caller");
        self.undo.push(Undo::Row(key, id, Some(row.clone())));
        for (k, v) in vals {
            row.insert((*k).to_string(), v.clone());
        }
        row.insert("write_date".into(), json!(now));
    }

    pub(crate) fn remove(&mut self, model: &str, id: i64) {
        let key = Self::key(model);
        let old = self.tables.get_mut(key).unwrap().rows.remove(&id);
        if old.is_some() {
            self.undo.push(Undo::Row(key, id, old));
        }
    }

    pub(crate) fn exists(&self, model: &str, id: i64) -> bool {
        self.tables.get(model).is_some_and(|t| t.rows.contains_key(&id))
    }

    pub(crate) fn ids(&self, model: &str) -> Vec<i64> {
        self.table(model).rows.keys().copied().collect()
    }

    pub(crate) fn row(&self, model: &str, id: i64) -> Option<&Rec> {
        self.table(model).rows.get(&id)
    }

    pub(crate) fn rows(&self, model: &str) -> impl Iterator<Item = &Rec> {
        self.table(model).rows.values()
    }

    /// Ids of `comodel` rows whose `inverse` points at `id`.
    pub(crate) fn children(&self, comodel: &str, inverse: &str, id: i64) -> Vec<i64> {
        self.table(comodel)
            .rows
            .iter()
            .filter(|(_, r)| r.get(inverse).and_then(as_id) == Some(id))
            .map(|(i, _)| *i)
            .collect()
    }

    /// Raw stored value (`false` when absent; many2one as an id; x2many as ids).
    pub(crate) fn get(&self, model: &str, id: i64, field: &str) -> Value {
        let Some(def) = schema::model(model) else { return Value::Bool(false) };
        let Some(row) = self.row(model, id) else { return Value::Bool(false) };
        match def.field(field) {
            Some(Kind::O2m(comodel, inverse)) => json!(self.children(comodel, inverse, id)),
            Some(Kind::Computed) => self.computed(model, id, field),
            Some(Kind::M2m(_)) => row.get(field).cloned().unwrap_or_else(|| json!([])),
            Some(Kind::Float) => json!(row.get(field).map(as_f64).unwrap_or(0.0)),
            Some(Kind::Int) => row.get(field).cloned().unwrap_or(json!(0)),
            _ => match row.get(field) {
                None | Some(Value::Null) => Value::Bool(false),
                Some(v) => v.clone(),
            },
        }
    }

    /// A dotted path (`partner_id.name`) followed through many2ones.
    pub(crate) fn get_path(&self, model: &str, id: i64, path: &str) -> Value {
        let mut model = model.to_string();
        let mut id = id;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                return self.get(&model, id, part);
            }
            let Some(Kind::M2o(comodel)) = schema::model(&model).and_then(|d| d.field(part)) else {
                return Value::Bool(false);
            };
            match as_id(&self.get(&model, id, part)) {
                Some(next) => {
                    model = comodel.to_string();
                    id = next;
                }
                None => return Value::Bool(false),
            }
        }
        Value::Bool(false)
    }

    pub(crate) fn display_name(&self, model: &str, id: i64) -> String {
        let s = |f: &str| self.get(model, id, f).as_str().unwrap_or("").to_string();
        match model {
            "product.product" => {
                let code = s("default_code");
                if code.is_empty() { s("name") } else { format!("[{code}] {}", s("name")) }
            }
            "account.move" => {
                let name = s("name");
                if name.is_empty() || name == "/" { format!("Draft Invoice (* {id})") } else { name }
            }
            "sale.order.line"
            | "purchase.order.line"
            | "stock.move.line"
            | "account.move.line"
            | "stock.return.picking.line" => {
                let product = as_id(&self.get(model, id, "product_id"));
                product.map(|p| self.display_name("product.product", p)).unwrap_or_default()
            }
            _ => {
                let name = s("name");
                if name.is_empty() { format!("{model},{id}") } else { name }
            }
        }
    }

    fn computed(&self, model: &str, id: i64, field: &str) -> Value {
        let lines_total = |comodel: &str, inverse: &str| -> f64 {
            self.children(comodel, inverse, id).iter().map(|l| self.line_subtotal(comodel, *l)).sum()
        };
        match (model, field) {
            (_, "display_name") => json!(self.display_name(model, id)),
            ("sale.order", "amount_total") => json!(lines_total("sale.order.line", "order_id")),
            ("purchase.order", "amount_total") => json!(lines_total("purchase.order.line", "order_id")),
            ("account.move", "amount_total") => json!(lines_total("account.move.line", "move_id")),
            ("account.move", "amount_residual") => {
                let row = self.row(model, id);
                match row.and_then(|r| r.get("amount_residual")) {
                    Some(v) if self.get(model, id, "state") != json!("draft") => json!(as_f64(v)),
                    _ => json!(lines_total("account.move.line", "move_id")),
                }
            }
            ("sale.order.line", "price_subtotal") => json!(self.line_subtotal("sale.order.line", id)),
            ("purchase.order.line", "price_subtotal") => json!(self.line_subtotal("purchase.order.line", id)),
            ("account.move.line", "price_subtotal") => json!(self.line_subtotal("account.move.line", id)),
            _ => Value::Bool(false),
        }
    }

    fn line_subtotal(&self, comodel: &str, line: i64) -> f64 {
        let qty_field = match comodel {
            "sale.order.line" => "product_uom_qty",
            "purchase.order.line" => "product_qty",
            _ => "quantity",
        };
        let qty = as_f64(&self.get(comodel, line, qty_field));
        let price = as_f64(&self.get(comodel, line, "price_unit"));
        ((qty * price) * 100.0).round() / 100.0
    }

    /// The value `read` answers: many2one as `[id, "display name"]`.
    pub(crate) fn render(&self, model: &str, id: i64, field: &str) -> Value {
        let kind = schema::model(model).and_then(|d| d.field(field));
        let raw = self.get(model, id, field);
        match kind {
            Some(Kind::M2o(comodel)) => match as_id(&raw) {
                Some(target) if self.exists(comodel, target) => json!([target, self.display_name(comodel, target)]),
                _ => Value::Bool(false),
            },
            _ => raw,
        }
    }

    /// Every stored row of `model` as read would render it (all fields).
    pub(crate) fn snapshot(&self, model: &str) -> Vec<Value> {
        let Some(def) = schema::model(model) else { return Vec::new() };
        self.ids(model)
            .into_iter()
            .map(|id| {
                let mut m = Map::new();
                for f in def.all_fields() {
                    m.insert(f.to_string(), self.render(model, id, f));
                }
                Value::Object(m)
            })
            .collect()
    }
}
