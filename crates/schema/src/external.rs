//! Ids from a company schema registry (`waybill schemas push`, `[registry] url`): when a
//! map is installed, records are written with the registry's ids and read by them, and a
//! record carrying an id the map does not know is looked up once through the resolver
//! the server installs (it asks the registry) — a producer that registered the same
//! schema under another id is decoded, not dead-lettered. Without a map (the default),
//! the ids are the catalog's (`schemas/ids.txt`).
//!
//! The map is process-wide and installed once, at start-up, before anything is encoded;
//! this crate still does no I/O: the resolver is the caller's.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use crate::registry::Registry;

/// Fetches the schema text a registry holds under an id, `None` when it has none.
pub type Resolver = Box<dyn Fn(u32) -> Option<String> + Send + Sync>;

/// The registry's ids of the catalog's schemas.
pub struct ExternalIds {
    /// Catalog id → registry id.
    to_registry: HashMap<u32, u32>,
    /// Registry id → catalog id (the map's and every id resolved since).
    to_catalog: RwLock<HashMap<u32, Option<u32>>>,
    resolver: Option<Resolver>,
}

impl std::fmt::Debug for ExternalIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIds").field("to_registry", &self.to_registry).finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<ExternalIds> = OnceLock::new();

/// Installs `catalog id → registry id` for this process, with `resolver` for ids the map
/// does not name. Fails if a map is installed already.
pub fn install(map: HashMap<u32, u32>, resolver: Option<Resolver>) -> Result<(), String> {
    let to_catalog = map.iter().map(|(c, r)| (*r, Some(*c))).collect();
    INSTALLED
        .set(ExternalIds { to_registry: map, to_catalog: RwLock::new(to_catalog), resolver })
        .map_err(|_| "the registry's ids are already installed in this process".to_string())
}

/// The installed map, if any.
pub fn installed() -> Option<&'static ExternalIds> {
    INSTALLED.get()
}

impl ExternalIds {
    /// The registry id of catalog id `id`.
    pub fn registry_id(&self, id: u32) -> Option<u32> {
        self.to_registry.get(&id).copied()
    }

    /// The catalog schema a record with registry id `id` was written with: from the map,
    /// or — once per id — the schema the resolver returns matched to the catalog by
    /// Avro's Parsing Canonical Form within the same full name.
    pub fn catalog_id(&self, registry: &Registry, id: u32) -> Option<u32> {
        if let Some(known) = self.to_catalog.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return *known;
        }
        let found = self.resolver.as_ref().and_then(|r| r(id)).and_then(|text| {
            let schema = apache_avro::Schema::parse_str(&text).ok()?;
            let name = schema.name()?.fullname(None);
            let form = schema.canonical_form();
            registry.versions(&name).into_iter().find(|s| s.schema().canonical_form() == form).map(|s| s.id())
        });
        self.to_catalog.write().unwrap_or_else(|p| p.into_inner()).insert(id, found);
        found
    }
}

impl Registry {
    /// The id written into a record of catalog schema `id`: the company registry's when
    /// its map is installed, else `id`.
    pub(crate) fn wire_id(&self, id: u32) -> u32 {
        installed().and_then(|x| x.registry_id(id)).unwrap_or(id)
    }

    /// The schema a record's frame names: by catalog id, or by the company registry's id
    /// when its map is installed.
    pub fn by_wire_id(&self, id: u32) -> Option<&crate::RegisteredSchema> {
        match installed() {
            None => self.get(id),
            Some(x) => self.get(x.catalog_id(self, id)?),
        }
    }
}
