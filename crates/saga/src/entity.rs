//! Legal entities (companies): the dimension that runs through orders, purchase orders,
//! statements, postings and exceptions, and the settings each entity overlays.
//!
//! An entity is configured in layers, each a table of the same shape:
//!
//! 1. the built-in defaults, then the deployment's `[policy]`;
//! 2. a **template** (`template = "de"`: the file `<template_dir>/de.toml`), the reusable
//!    part of a country — currency, tax codes, posting policy, approval limits;
//! 3. the entity's own table (`[entities.companies.acme-de]`): its name, Odoo company,
//!    bank accounts, and anything it sets differently from its template.
//!
//! A later layer replaces what it names and keeps the rest (tables merge key by key, any
//! other value is replaced whole), so a new country is a template file and a new
//! company a few lines, never code. [`Entities::build`] is pure: the shell reads the
//! template files and hands their tables in.
//!
//! Which entity a record belongs to is decided once, when its flow opens
//! ([`Entities::of_event`]): an order or purchase order names its company, a statement is
//! of the entity that owns its account. The saga journals the resolved entity in the
//! record that opens the flow, and every exception and held posting the flow raises
//! carries it, so the queues filter by entity and a held posting is decided under the
//! limits of the entity that held it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use waybill_domain::event::EventBody;

use crate::policy::Policy;

/// The `[entities]` section as written: which entity is the default, where templates
/// are, and each entity's own table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntitiesConfig {
    /// The entity of records that name none (required once any entity is configured).
    pub default: Option<String>,
    /// Directory of the templates entities name (`<template_dir>/<template>.toml`);
    /// relative paths are read from the configuration file's directory.
    pub template_dir: Option<PathBuf>,
    /// Each entity's own table, by its code (`[entities.companies.acme-de]`); see
    /// [`Entity`] for the keys.
    pub companies: BTreeMap<String, Value>,
}

/// One legal entity, every layer applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its code (`acme-de`), as orders, statements and filters name it.
    pub code: String,
    /// The company's name.
    pub name: String,
    /// ISO 4217 currency of its books: the currency its posting policy's amounts and
    /// approval limits are in.
    pub currency: String,
    /// Odoo's `res.company` id, so the Odoo connector maps an order's `company_id` to it.
    pub odoo_company_id: Option<i64>,
    /// Its bank accounts (IBAN or the bank's account id): a statement of one of them is
    /// this entity's.
    pub bank_accounts: BTreeSet<String>,
    /// The tax codes its orders may use; empty: those of the master data.
    pub tax_codes: BTreeSet<String>,
    /// The template it was built on, if any.
    pub template: Option<String>,
    /// Its policy: the deployment's, overlaid by the template's and its own.
    pub policy: Policy,
}

/// The keys of one layer of an entity (a template file or the entity's own table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    name: Option<String>,
    currency: Option<String>,
    odoo_company_id: Option<i64>,
    #[serde(default)]
    bank_accounts: BTreeSet<String>,
    #[serde(default)]
    tax_codes: BTreeSet<String>,
    template: Option<String>,
    /// Overlay of [`Policy`] (checked when it is applied).
    policy: Option<Value>,
}

/// Every configured entity; empty when the deployment runs one company and configures
/// none (then no record has an entity and the deployment's policy applies to all).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entities {
    default: Option<String>,
    by_code: BTreeMap<String, Entity>,
}

impl Entities {
    /// Builds the entities of `config` on the deployment's `policy`, with the templates
    /// the shell read (`template name → table`). Errors say which entity and key is
    /// wrong and what to do.
    pub fn build(
        config: &EntitiesConfig,
        policy: &Policy,
        templates: &BTreeMap<String, Value>,
    ) -> Result<Self, String> {
        if config.companies.is_empty() {
            if let Some(d) = &config.default {
                return Err(format!(
                    "[entities] default = {d:?} but no entity is configured; add [entities.companies.{d}] or remove the default"
                ));
            }
            return Ok(Entities::default());
        }
        let base = serde_json::to_value(policy).map_err(|e| format!("the [policy] section cannot be layered: {e}"))?;
        let mut by_code = BTreeMap::new();
        for (code, own) in &config.companies {
            let at = format!("[entities.companies.{code}]");
            let own_layer: Layer = layer(own, &at)?;
            let merged = match &own_layer.template {
                Some(t) => {
                    let template = templates.get(t).ok_or_else(|| {
                        format!(
                            "{at} names template {t:?}, which is not among the templates read ({}); add {t}.toml to [entities] template_dir",
                            names(templates.keys())
                        )
                    })?;
                    let from = format!("template {t:?}");
                    let t_layer: Layer = layer(template, &from)?;
                    if t_layer.template.is_some() {
                        return Err(format!(
                            "{from} names a template itself; templates do not chain, copy what it needs"
                        ));
                    }
                    merge(template.clone(), own.clone())
                }
                None => own.clone(),
            };
            let l: Layer = layer(&merged, &at)?;
            if l.policy.as_ref().is_some_and(|p| p.get("ownership").is_some()) {
                return Err(format!(
                    "{at} (or its template) sets policy.ownership; which system owns which event is decided at the edge before an event's entity is known, so it is deployment-wide: set it in [policy.ownership]"
                ));
            }
            let mut p = base.clone();
            if let Some(overlay) = l.policy {
                p = merge(p, overlay);
            }
            let mut policy: Policy = serde_json::from_value(p)
                .map_err(|e| format!("{at}: its policy (with its template's) is not valid: {e}"))?;
            let currency = l.currency.ok_or_else(|| {
                format!("{at} has no currency; set currency = \"EUR\" (ISO 4217) in it or in its template")
            })?;
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("{at}: currency {currency:?} is not an ISO 4217 code such as \"EUR\""));
            }
            policy.check().map_err(|(key, problem)| format!("{at}: {key}: {problem}"))?;
            policy.posting.currency = Some(currency.clone());
            by_code.insert(
                code.clone(),
                Entity {
                    code: code.clone(),
                    name: l.name.unwrap_or_else(|| code.clone()),
                    currency,
                    odoo_company_id: l.odoo_company_id,
                    bank_accounts: l.bank_accounts,
                    tax_codes: l.tax_codes,
                    template: l.template,
                    policy,
                },
            );
        }
        let all: Vec<&Entity> = by_code.values().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if let Some(acc) = a.bank_accounts.intersection(&b.bank_accounts).next() {
                    return Err(format!(
                        "bank account {acc} is listed by both {} and {}; an account belongs to one entity",
                        a.code, b.code
                    ));
                }
                if a.odoo_company_id.is_some() && a.odoo_company_id == b.odoo_company_id {
                    return Err(format!(
                        "Odoo company {} is mapped to both {} and {}; give each its own odoo_company_id",
                        a.odoo_company_id.unwrap_or_default(),
                        a.code,
                        b.code
                    ));
                }
            }
        }
        let default = match &config.default {
            Some(d) if by_code.contains_key(d) => d.clone(),
            Some(d) => {
                return Err(format!(
                    "[entities] default = {d:?} is not a configured entity ({})",
                    names(by_code.keys())
                ));
            }
            None if by_code.len() == 1 => by_code.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(format!(
                    "[entities] has {} entities and no default; set default = one of {}",
                    by_code.len(),
                    names(by_code.keys())
                ));
            }
        };
        Ok(Entities { default: Some(default), by_code })
    }

    /// True when no entity is configured.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// The entity of `code`.
    pub fn get(&self, code: &str) -> Option<&Entity> {
        self.by_code.get(code)
    }

    /// Every entity, by code.
    pub fn iter(&self) -> impl Iterator<Item = &Entity> {
        self.by_code.values()
    }

    /// The default entity.
    pub fn default_entity(&self) -> Option<&Entity> {
        self.default.as_deref().and_then(|d| self.by_code.get(d))
    }

    /// The entity of Odoo's company `id`.
    pub fn by_odoo_company(&self, id: i64) -> Option<&Entity> {
        self.by_code.values().find(|e| e.odoo_company_id == Some(id))
    }

    /// The entity a record that names `company` belongs to: that one, or the default
    /// when it names none; `Ok(None)` when no entity is configured. `odoo-company-<id>`
    /// (what the Odoo connector names a company no entity mapped when it read the record)
    /// is the entity whose `odoo_company_id` is `<id>`, so a record read before the mapping
    /// was added resolves once it is. A company that is not configured is an error that
    /// says what to do.
    pub fn resolve(&self, company: Option<&str>) -> Result<Option<&Entity>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let Some(c) = company else { return Ok(self.default_entity()) };
        if let Some(e) = self.by_code.get(c) {
            return Ok(Some(e));
        }
        let odoo = c.strip_prefix(ODOO_COMPANY).and_then(|id| id.parse::<i64>().ok());
        if let Some(e) = odoo.and_then(|id| self.by_odoo_company(id)) {
            return Ok(Some(e));
        }
        Err(match odoo {
            Some(id) => format!(
                "Odoo company {id} is not mapped to an entity ({}); set odoo_company_id = {id} on its entity under [entities.companies.<code>], restart, then replay this record",
                names(self.by_code.keys())
            ),
            None => format!(
                "company {c:?} is not a configured entity ({}); configure [entities.companies.{c}] or correct the company in Odoo, then replay this record",
                names(self.by_code.keys())
            ),
        })
    }

    /// The entity a statement of `account` belongs to: the one that lists the account,
    /// else the one the importer named, else the default. An importer that names an
    /// entity other than the account's owner is refused.
    pub fn of_statement(&self, named: Option<&str>, account: &str) -> Result<Option<&Entity>, String> {
        let owner = self.by_code.values().find(|e| e.bank_accounts.contains(account));
        match (owner, self.resolve(named)?) {
            (Some(o), Some(n)) if named.is_some() && o.code != n.code => Err(format!(
                "account {account} belongs to entity {}, but the statement names {}; import it without an entity or under {}",
                o.code, n.code, o.code
            )),
            (Some(o), _) => Ok(Some(o)),
            (None, n) => Ok(n),
        }
    }

    /// The entity an inbound event that opens a flow belongs to (an order's or purchase
    /// order's company, a statement's account); `Ok(None)` for every other event.
    pub fn of_event(&self, body: &EventBody) -> Result<Option<&Entity>, String> {
        match body {
            EventBody::OrderReleased(o) => self.resolve(o.company.as_deref()),
            EventBody::PurchaseOrderConfirmed(o) => self.resolve(o.company.as_deref()),
            EventBody::StatementReceived(s) => self.of_statement(s.entity.as_deref(), &s.account),
            _ => Ok(None),
        }
    }
}

pub use waybill_domain::event::ODOO_COMPANY;

fn layer(v: &Value, at: &str) -> Result<Layer, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{at}: {e}"))
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() { "none".to_string() } else { v.join(", ") }
}

/// `over` laid on `under`: tables merge key by key, anything else is replaced.
pub fn merge(under: Value, over: Value) -> Value {
    match (under, over) {
        (Value::Object(mut u), Value::Object(o)) => {
            for (k, v) in o {
                let merged = match u.remove(&k) {
                    Some(prev) => merge(prev, v),
                    None => v,
                };
                u.insert(k, merged);
            }
            Value::Object(u)
        }
        (_, o) => o,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use waybill_domain::Money;

    use super::*;

    fn config(companies: Value, default: Option<&str>) -> EntitiesConfig {
        EntitiesConfig {
            default: default.map(String::from),
            template_dir: None,
            companies: serde_json::from_value(companies).unwrap(),
        }
    }

    fn templates() -> BTreeMap<String, Value> {
        BTreeMap::from([(
            "de".to_string(),
            json!({"currency": "EUR", "tax_codes": ["DE-VAT-19", "DE-VAT-7"],
                   "policy": {"posting": {"hold_invoices_above": 3_000_00,
                                          "approval_limits": {"approver": 2_000_00}}}}),
        )])
    }

    #[test]
    fn layers_apply_in_order_defaults_deployment_template_entity() {
        let mut deployment = Policy::default();
        deployment.posting.restocking_fee_pct = 12.0;
        let c = config(
            json!({"acme-de": {"template": "de", "name": "Acme GmbH", "bank_accounts": ["DE89"],
                               "policy": {"posting": {"approval_limits": {"senior-approver": 50_000_00}}}},
                   "acme-us": {"currency": "USD"}}),
            Some("acme-us"),
        );
        let e = Entities::build(&c, &deployment, &templates()).unwrap();
        let de = e.get("acme-de").unwrap();
        assert_eq!(de.currency, "EUR");
        assert_eq!(de.name, "Acme GmbH");
        // The template's limit and the entity's own are both there (tables merge); the
        // deployment's restocking fee and the built-in SLA stay.
        let limits = &de.policy.posting.approval_limits;
        assert_eq!(limits["approver"], Money(2_000_00));
        assert_eq!(limits["senior-approver"], Money(50_000_00));
        assert_eq!(limits["admin"], Money(i64::MAX));
        assert_eq!(de.policy.posting.hold_invoices_above, Money(3_000_00));
        assert_eq!(de.policy.posting.restocking_fee_pct, 12.0);
        assert_eq!(de.policy.posting.currency.as_deref(), Some("EUR"));
        let us = e.get("acme-us").unwrap();
        assert_eq!(us.policy.posting.hold_invoices_above, Policy::default().posting.hold_invoices_above);
        assert_eq!(us.policy.posting.restocking_fee_pct, 12.0);
        assert_eq!(e.resolve(None).unwrap().unwrap().code, "acme-us");
        let mapped = config(json!({"a": {"currency": "EUR", "odoo_company_id": 3}}), None);
        let mapped = Entities::build(&mapped, &deployment, &BTreeMap::new()).unwrap();
        assert_eq!(mapped.resolve(Some("odoo-company-3")).unwrap().unwrap().code, "a", "read before it was mapped");
        assert_eq!(e.of_statement(None, "DE89").unwrap().unwrap().code, "acme-de");
        assert_eq!(e.of_statement(None, "US-1").unwrap().unwrap().code, "acme-us");
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        let p = Policy::default();
        let t = templates();
        let err =
            |companies: Value, default: Option<&str>| Entities::build(&config(companies, default), &p, &t).unwrap_err();
        assert!(err(json!({"x": {"template": "fr"}}), None).contains("template \"fr\""));
        assert!(err(json!({"x": {}}), None).contains("has no currency"));
        assert!(err(json!({"x": {"currency": "eur"}}), None).contains("ISO 4217"));
        assert!(err(json!({"x": {"currency": "EUR", "colour": 1}}), None).contains("unknown field `colour`"));
        assert!(
            err(json!({"x": {"currency": "EUR", "policy": {"posting": {"hold_above": 1}}}}), None)
                .contains("unknown field `hold_above`")
        );
        assert!(err(json!({"a": {"currency": "EUR"}, "b": {"currency": "USD"}}), None).contains("no default"));
        assert!(err(json!({"a": {"currency": "EUR"}}), Some("b")).contains("not a configured entity"));
        assert!(
            err(json!({"a": {"currency": "EUR", "bank_accounts": ["X"]}, "b": {"currency": "USD", "bank_accounts": ["X"]}}), Some("a"))
                .contains("listed by both")
        );
        let e = Entities::build(
            &config(json!({"a": {"currency": "EUR", "bank_accounts": ["X"]}, "b": {"currency": "USD"}}), Some("a")),
            &p,
            &t,
        )
        .unwrap();
        assert!(e.resolve(Some("c")).unwrap_err().contains("configure [entities.companies.c]"));
        assert!(e.resolve(Some("odoo-company-7")).unwrap_err().contains("set odoo_company_id = 7 on its entity"));
        assert!(
            err(json!({"a": {"currency": "EUR", "policy": {"ownership": {"GoodsIssued": "wms"}}}}), None)
                .contains("deployment-wide")
        );
        assert!(
            err(json!({"a": {"currency": "EUR", "policy": {"cash": {"schedule": "0 0 30 2 *"}}}}), None)
                .contains("never fires")
        );
        assert!(e.of_statement(Some("b"), "X").unwrap_err().contains("belongs to entity a"));
        assert_eq!(e.of_statement(Some("b"), "Y").unwrap().unwrap().code, "b");
    }

    #[test]
    fn no_entities_means_none_everywhere() {
        let e = Entities::build(&EntitiesConfig::default(), &Policy::default(), &BTreeMap::new()).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.resolve(Some("anything")).unwrap(), None);
        assert_eq!(e.of_statement(None, "X").unwrap(), None);
    }
}
