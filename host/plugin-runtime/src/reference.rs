//! The reference of every function a plugin exports, with its JSON input and output as
//! `berth plugin call` and `POST /api/v1/plugins/{name}/invoke` take them (see
//! [`crate::json`]), generated from the WIT into `wit/FUNCTIONS.md`. A test regenerates
//! it and fails when the committed file differs, so the document cannot drift from the
//! contract; `BERTH_BLESS=1 cargo test --workspace --lib reference` rewrites it.

use std::fmt::Write as _;
use std::path::Path;

use wit_parser::{Docs, Resolve, Type, TypeDefKind, TypeId, WorldItem};

/// The Markdown reference for the package versions in `versions`, read from
/// `wit_root/v<version>`.
pub fn markdown(wit_root: &Path, versions: &[&str]) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(
        "# Plugin functions: JSON in and out\n\n\
         Generated from the WIT in this directory by the plugin runtime's tests; do not edit \
         (`BERTH_BLESS=1 cargo test --workspace --lib reference` rewrites it).\n\n\
         `berth plugin call NAME FUNCTION --input JSON` and \
         `POST /api/v1/plugins/{name}/invoke` (`{\"function\": …, \"input\": …}`) take a \
         function's parameters as one JSON object keyed by the WIT parameter names, and \
         answer its result, in the WIT's own terms:\n\n\
         | WIT | JSON |\n|---|---|\n\
         | `record` | an object keyed by the WIT field names (`machine-type`); an absent `option` field is `none` |\n\
         | `enum` | the case name as a string: `\"running\"` |\n\
         | `variant` | `{\"<case>\": payload}`, or `\"<case>\"` for a case without one |\n\
         | `option<T>` | `T` or `null` |\n\
         | `result<T, E>` | `{\"ok\": T}` or `{\"error\": E}` |\n\
         | `list<T>`, `tuple<…>` | an array |\n\
         | `string`, `bool`, integers | a string, `true`/`false`, a number |\n\n",
    );
    // The newest first: what a plugin author builds for today.
    for version in versions.iter().rev() {
        let mut resolve = Resolve::default();
        let (package, _) = resolve.push_dir(wit_root.join(format!("v{version}")))?;
        let package = &resolve.packages[package];
        writeln!(out, "## {}\n", package.name)?;
        let mut used: Vec<TypeId> = Vec::new();
        for (world_name, world) in &package.worlds {
            let world = &resolve.worlds[*world];
            writeln!(out, "### world `{world_name}`\n")?;
            write_docs(&mut out, &world.docs);
            for item in world.exports.values() {
                let WorldItem::Interface { id, .. } = item else {
                    continue;
                };
                let interface = &resolve.interfaces[*id];
                let interface_name = interface.name.as_deref().unwrap_or("?");
                for function in interface.functions.values() {
                    writeln!(out, "#### `{}` ({interface_name})\n", function.name)?;
                    write_docs(&mut out, &function.docs);
                    let input: Vec<String> = function
                        .params
                        .iter()
                        .map(|p| format!("\"{}\": {}", p.name, shape(&resolve, &p.ty, &mut used)))
                        .collect();
                    writeln!(out, "- input: `{{{}}}`", input.join(", "))?;
                    let output = match &function.result {
                        Some(ty) => shape(&resolve, ty, &mut used),
                        None => "null".to_string(),
                    };
                    writeln!(out, "- output: `{output}`\n")?;
                }
            }
        }
        writeln!(out, "### types\n")?;
        let mut written: Vec<TypeId> = Vec::new();
        while let Some(id) = used.iter().find(|id| !written.contains(id)).copied() {
            written.push(id);
            write_type(&mut out, &resolve, id, &mut used)?;
        }
    }
    Ok(out)
}

fn write_docs(out: &mut String, docs: &Docs) {
    if let Some(text) = &docs.contents {
        out.push_str(text.trim());
        out.push_str("\n\n");
    }
}

/// The JSON shape of `ty`: a named type by its name (described under "types"), an
/// anonymous one spelled out.
fn shape(resolve: &Resolve, ty: &Type, used: &mut Vec<TypeId>) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "unsigned".into(),
        Type::S8 | Type::S16 | Type::S32 | Type::S64 => "integer".into(),
        Type::F32 | Type::F64 => "number".into(),
        Type::Char | Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            if let Some(name) = &def.name {
                // `pair` and other aliases read better spelled out.
                if let TypeDefKind::Type(inner) = &def.kind {
                    return shape(resolve, inner, used);
                }
                if !used.contains(id) {
                    used.push(*id);
                }
                return name.clone();
            }
            match &def.kind {
                TypeDefKind::Option(inner) => format!("{} | null", shape(resolve, inner, used)),
                TypeDefKind::List(inner) => format!("[{}, …]", shape(resolve, inner, used)),
                TypeDefKind::Tuple(tuple) => format!(
                    "[{}]",
                    tuple
                        .types
                        .iter()
                        .map(|t| shape(resolve, t, used))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TypeDefKind::Result(result) => {
                    let side = |t: &Option<Type>, used: &mut Vec<TypeId>| match t {
                        Some(t) => shape(resolve, t, used),
                        None => "null".to_string(),
                    };
                    let ok = side(&result.ok, used);
                    let err = side(&result.err, used);
                    format!("{{\"ok\": {ok}}} | {{\"error\": {err}}}")
                }
                TypeDefKind::Type(inner) => shape(resolve, inner, used),
                other => other.as_str().to_string(),
            }
        }
    }
}

fn write_type(
    out: &mut String,
    resolve: &Resolve,
    id: TypeId,
    used: &mut Vec<TypeId>,
) -> std::fmt::Result {
    let def = &resolve.types[id];
    let name = def.name.as_deref().unwrap_or("?");
    writeln!(out, "#### `{name}` ({})\n", def.kind.as_str())?;
    write_docs(out, &def.docs);
    let one_line = |docs: &Docs| {
        docs.contents
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    match &def.kind {
        TypeDefKind::Record(record) => {
            writeln!(out, "| field | JSON | |\n|---|---|---|")?;
            for field in &record.fields {
                let ty = shape(resolve, &field.ty, used);
                writeln!(
                    out,
                    "| `{}` | `{ty}` | {} |",
                    field.name,
                    one_line(&field.docs)
                )?;
            }
        }
        TypeDefKind::Variant(variant) => {
            writeln!(out, "| case | JSON | |\n|---|---|---|")?;
            for case in &variant.cases {
                let json = match &case.ty {
                    Some(ty) => format!("{{\"{}\": {}}}", case.name, shape(resolve, ty, used)),
                    None => format!("\"{}\"", case.name),
                };
                writeln!(
                    out,
                    "| `{}` | `{json}` | {} |",
                    case.name,
                    one_line(&case.docs)
                )?;
            }
        }
        TypeDefKind::Enum(enumeration) => {
            let cases: Vec<String> = enumeration
                .cases
                .iter()
                .map(|c| format!("`\"{}\"`", c.name))
                .collect();
            writeln!(out, "One of {}.", cases.join(", "))?;
        }
        TypeDefKind::Flags(flags) => {
            let names: Vec<String> = flags
                .flags
                .iter()
                .map(|f| format!("`\"{}\"`", f.name))
                .collect();
            writeln!(out, "An array of {}.", names.join(", "))?;
        }
        other => {
            writeln!(out, "`{}`", other.as_str())?;
        }
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit")
    }

    #[test]
    fn reference_matches_the_wit() {
        let generated = markdown(&wit_root(), crate::SUPPORTED_VERSIONS).unwrap();
        let path = wit_root().join("FUNCTIONS.md");
        if std::env::var_os("BERTH_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "wit/FUNCTIONS.md is out of date with the WIT: run \
             `BERTH_BLESS=1 cargo test --workspace --lib reference` and commit it"
        );
    }

    #[test]
    fn invoke_knows_exactly_the_functions_each_world_exports() {
        for version in crate::SUPPORTED_VERSIONS {
            let mut resolve = Resolve::default();
            let (package, _) = resolve
                .push_dir(wit_root().join(format!("v{version}")))
                .unwrap();
            for (world_name, world) in &resolve.packages[package].worlds {
                let kind = crate::Kind::from_world(world_name).unwrap();
                let mut exported: Vec<String> = Vec::new();
                for item in resolve.worlds[*world].exports.values() {
                    if let WorldItem::Interface { id, .. } = item {
                        exported.extend(resolve.interfaces[*id].functions.keys().cloned());
                    }
                }
                exported.sort();
                let mut known: Vec<String> = crate::calls::functions(kind, version)
                    .iter()
                    .map(|f| f.to_string())
                    .collect();
                known.sort();
                assert_eq!(known, exported, "{world_name}");
            }
        }
    }
}
