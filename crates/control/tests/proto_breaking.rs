//! The gRPC API only changes compatibly: the descriptor set of the last release,
//! `proto/waybill/v1/control.release.binpb`, against the one this build compiles from
//! `proto/`. A removed or renumbered field, a changed field type or cardinality, a
//! renamed field (JSON clients and generated code), a removed message, enum value,
//! service or RPC, or an RPC with another request, response or streaming fails the test
//! with what changed and what to do instead (buf's `WIRE_JSON` rules, in short).
//!
//! Cutting a release: `WAYBILL_PROTO_RELEASE=1 cargo test -p waybill-control --test
//! proto_breaking` writes this build's descriptor set as the new baseline.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet, ServiceDescriptorProto,
};

fn release_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/waybill/v1/control.release.binpb")
}

fn current() -> FileDescriptorSet {
    FileDescriptorSet::decode(waybill_control::proto::FILE_DESCRIPTOR_SET).expect("the compiled descriptor set decodes")
}

/// Every message, enum and service by full name (`waybill.v1.Posting`, nested with dots).
#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

fn index(set: &FileDescriptorSet) -> Index<'_> {
    fn walk<'a>(prefix: &str, m: &'a DescriptorProto, ix: &mut Index<'a>) {
        let name = format!("{prefix}.{}", m.name());
        for e in &m.enum_type {
            ix.enums.insert(format!("{name}.{}", e.name()), e);
        }
        for n in &m.nested_type {
            walk(&name, n, ix);
        }
        ix.messages.insert(name, m);
    }
    let mut ix = Index::default();
    for f in &set.file {
        let pkg = f.package();
        for m in &f.message_type {
            walk(pkg, m, &mut ix);
        }
        for e in &f.enum_type {
            ix.enums.insert(format!("{pkg}.{}", e.name()), e);
        }
        for s in &f.service {
            ix.services.insert(format!("{pkg}.{}", s.name()), s);
        }
    }
    ix
}

fn type_name(f: &FieldDescriptorProto) -> String {
    let repeated = if f.label() == Label::Repeated { "repeated " } else { "" };
    let t = match f.r#type() {
        Type::Message | Type::Enum => f.type_name().trim_start_matches('.').to_string(),
        t => t.as_str_name().trim_start_matches("TYPE_").to_ascii_lowercase(),
    };
    format!("{repeated}{t}")
}

fn reserved(m: &DescriptorProto, number: i32) -> bool {
    m.reserved_range.iter().any(|r| (r.start()..r.end()).contains(&number))
}

/// What in `new` breaks clients of `old`.
fn breaking(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (index(old), index(new));
    let mut out = Vec::new();
    for (name, m) in &old.messages {
        let Some(n) = new.messages.get(name) else {
            out.push(format!(
                "message {name} was removed; clients still send or read it — keep it (deprecate it instead)"
            ));
            continue;
        };
        for f in &m.field {
            let same_number = n.field.iter().find(|x| x.number() == f.number());
            let same_name = n.field.iter().find(|x| x.name() == f.name());
            match (same_number, same_name) {
                (None, Some(moved)) => out.push(format!(
                    "field {name}.{} was renumbered from {} to {}; the wire format names fields by number — keep {} and add a new field instead",
                    f.name(), f.number(), moved.number(), f.number()
                )),
                (None, None) if !reserved(n, f.number()) => out.push(format!(
                    "field {name}.{} = {} was removed; old clients still send it — keep it, or remove it with `reserved {}; reserved \"{}\";`",
                    f.name(), f.number(), f.number(), f.name()
                )),
                (None, None) => {}
                (Some(x), _) => {
                    if type_name(x) != type_name(f) {
                        out.push(format!(
                            "field {name}.{} = {} changed type from {} to {}; add a new field with the new type instead",
                            f.name(), f.number(), type_name(f), type_name(x)
                        ));
                    }
                    if x.name() != f.name() {
                        out.push(format!(
                            "field {name}.{} = {} was renamed to {}; JSON clients and generated code use the name — keep it",
                            f.name(), f.number(), x.name()
                        ));
                    }
                    if x.oneof_index.is_some() != f.oneof_index.is_some() {
                        out.push(format!("field {name}.{} = {} moved into or out of a oneof", f.name(), f.number()));
                    }
                }
            }
        }
    }
    for (name, e) in &old.enums {
        let Some(n) = new.enums.get(name) else {
            out.push(format!("enum {name} was removed"));
            continue;
        };
        for v in &e.value {
            if !n.value.iter().any(|x| x.number() == v.number()) {
                out.push(format!(
                    "enum value {name}.{} = {} was removed; old clients still send it",
                    v.name(),
                    v.number()
                ));
            }
        }
    }
    for (name, s) in &old.services {
        let Some(n) = new.services.get(name) else {
            out.push(format!("service {name} was removed; its clients get UNIMPLEMENTED"));
            continue;
        };
        for m in &s.method {
            let Some(x) = n.method.iter().find(|x| x.name() == m.name()) else {
                out.push(format!(
                    "rpc {name}.{} was removed; its clients get UNIMPLEMENTED — keep it (deprecate it instead)",
                    m.name()
                ));
                continue;
            };
            if x.input_type() != m.input_type() || x.output_type() != m.output_type() {
                out.push(format!(
                    "rpc {name}.{} changed from ({}) returns ({}) to ({}) returns ({}); add a new rpc instead",
                    m.name(),
                    m.input_type(),
                    m.output_type(),
                    x.input_type(),
                    x.output_type()
                ));
            }
            if x.client_streaming() != m.client_streaming() || x.server_streaming() != m.server_streaming() {
                out.push(format!("rpc {name}.{} changed streaming; add a new rpc instead", m.name()));
            }
        }
    }
    out
}

#[test]
fn the_grpc_api_has_no_breaking_change_since_the_last_release() {
    if std::env::var_os("WAYBILL_PROTO_RELEASE").is_some() {
        std::fs::write(release_path(), waybill_control::proto::FILE_DESCRIPTOR_SET).unwrap();
        eprintln!("wrote {} (the new release baseline)", release_path().display());
        return;
    }
    let bytes = std::fs::read(release_path())
        .unwrap_or_else(|e| panic!("cannot read the last release's descriptor set {}: {e}", release_path().display()));
    let release = FileDescriptorSet::decode(&bytes[..]).expect("the release descriptor set decodes");
    let problems = breaking(&release, &current());
    assert!(
        problems.is_empty(),
        "breaking changes to proto/waybill/v1 since the last release:\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself, on the compiled API edited in memory.
#[test]
fn each_kind_of_breaking_edit_is_named() {
    let old = current();
    let edit = |f: &dyn Fn(&mut FileDescriptorSet)| {
        let mut new = old.clone();
        f(&mut new);
        breaking(&old, &new)
    };

    let removed = edit(&|s| {
        let m =
            s.file.iter_mut().flat_map(|f| f.message_type.iter_mut()).find(|m| m.name() == "DecisionRequest").unwrap();
        m.field.retain(|f| f.name() != "reason");
    });
    assert!(
        removed.iter().any(|p| p.starts_with("field waybill.v1.DecisionRequest.reason") && p.contains("was removed")),
        "{removed:?}"
    );

    let renumbered = edit(&|s| {
        let m =
            s.file.iter_mut().flat_map(|f| f.message_type.iter_mut()).find(|m| m.name() == "DecisionRequest").unwrap();
        let f = m.field.iter_mut().find(|f| f.name() == "reason").unwrap();
        f.number = Some(99);
    });
    assert!(renumbered.iter().any(|p| p.contains("DecisionRequest.reason was renumbered")), "{renumbered:?}");

    let retyped = edit(&|s| {
        let m =
            s.file.iter_mut().flat_map(|f| f.message_type.iter_mut()).find(|m| m.name() == "DecisionRequest").unwrap();
        let f = m.field.iter_mut().find(|f| f.name() == "reason").unwrap();
        f.set_type(Type::Int64);
    });
    assert!(
        retyped.iter().any(|p| p.contains("DecisionRequest.reason") && p.contains("changed type from string to int64")),
        "{retyped:?}"
    );

    let rpc = edit(&|s| {
        for f in &mut s.file {
            for svc in &mut f.service {
                svc.method.retain(|m| m.name() != "Approve");
            }
        }
    });
    assert!(rpc.iter().any(|p| p.starts_with("rpc waybill.v1.Approvals.Approve was removed")), "{rpc:?}");
}
