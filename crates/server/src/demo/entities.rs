//! The demo distributor's two companies, run side by side: a French one that books in
//! euros and an American one that books in dollars, each built on the country template
//! shipped in `deploy/entities/` with its own approval limits and tax codes. One order in
//! three is the American company's.

use std::path::Path;

use crate::config::Config;

/// One of the demo's companies.
#[derive(Debug)]
pub struct DemoEntity {
    /// Its code in `[entities]`.
    pub code: &'static str,
    /// Its name.
    pub name: &'static str,
    /// The country template it is built on (`deploy/entities/<template>.toml`).
    pub template: &'static str,
    /// The currency it sells and books in (the template's).
    pub currency: &'static str,
    /// The tax codes its orders use (the template's).
    pub tax_codes: &'static [&'static str],
    /// Its bank account: the statements of this account are its.
    pub account: &'static str,
    /// Its `res.company` id in the Odoo double (created in this order).
    pub odoo_company_id: i64,
}

/// The two companies; the first is the default.
pub const ENTITIES: [DemoEntity; 2] = [
    DemoEntity {
        code: "acme-fr",
        name: "Acme Distribution SAS",
        template: "fr",
        currency: "EUR",
        tax_codes: &["VAT20", "VAT10", "VAT0"],
        account: "FR7630006000011234567890189",
        odoo_company_id: 1,
    },
    DemoEntity {
        code: "acme-us",
        name: "Acme Distribution Inc.",
        template: "us",
        currency: "USD",
        tax_codes: &["US-SALES", "US-EXEMPT"],
        account: "US-026009593-4410012345",
        odoo_company_id: 2,
    },
];

/// The country templates the demo's companies name, as shipped.
const TEMPLATES: [(&str, &str); 2] = [
    ("fr", include_str!("../../../../deploy/entities/fr.toml")),
    ("us", include_str!("../../../../deploy/entities/us.toml")),
];

/// The company of order `i`: one order in three is the American company's.
pub fn of_order(seed: u64, i: usize) -> &'static DemoEntity {
    let mut r = super::world::rng(seed, i, 7);
    if r.u8(0..3) == 0 { &ENTITIES[1] } else { &ENTITIES[0] }
}

/// The company of `code`; the default one for an order that names none.
pub fn of_code(code: Option<&str>) -> &'static DemoEntity {
    ENTITIES.iter().find(|e| Some(e.code) == code).unwrap_or(&ENTITIES[0])
}

/// Configures the two companies in `cfg` as an operator would: the shipped templates in
/// a template directory under `dir`, each company's own table naming its template, Odoo
/// company and bank account; then builds them the way `waybill serve` does.
pub fn configure(cfg: &mut Config, dir: &Path) -> anyhow::Result<()> {
    let templates = dir.join("entities");
    std::fs::create_dir_all(&templates)?;
    for (name, text) in TEMPLATES {
        std::fs::write(templates.join(format!("{name}.toml")), text)?;
    }
    cfg.entities.default = Some(ENTITIES[0].code.to_string());
    cfg.entities.template_dir = Some(templates);
    cfg.entities.companies = ENTITIES
        .iter()
        .map(|e| {
            let table = serde_json::json!({
                "name": e.name,
                "template": e.template,
                "odoo_company_id": e.odoo_company_id,
                "bank_accounts": [e.account],
            });
            (e.code.to_string(), table)
        })
        .collect();
    cfg.build_entities(dir)?;
    Ok(())
}
