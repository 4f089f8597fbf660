//! `weir plugins list` and `weir plugins inspect`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::bindings::types::Capability;
use crate::plugins::{PluginInfo, builtin, kind_name};
use crate::session::prepare::loader;

pub async fn list(as_json: bool) -> ExitCode {
    let loader = match loader() {
        Ok(l) => l,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    let mut rows = Vec::new();
    for name in builtin::names() {
        match loader
            .load(&crate::plan::PluginRef::Builtin(name.to_string()))
            .await
        {
            Ok(p) => rows.push(p.info.clone()),
            Err(e) => {
                eprintln!("weir: built-in plugin `{name}` failed to load: {e}");
                return ExitCode::from(70);
            }
        }
    }
    if as_json {
        let items: Vec<_> = rows.iter().map(info_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return ExitCode::SUCCESS;
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:<11}  {:<7}  DESCRIPTION", "NAME", "KIND", "VERSION");
    for r in rows {
        println!(
            "{:<w$}  {:<11}  {:<7}  {}",
            r.name,
            kind_name(r.kind),
            r.manifest.version,
            r.manifest.description
        );
    }
    ExitCode::SUCCESS
}

pub async fn inspect(target: &str, as_json: bool) -> ExitCode {
    let loader = match loader() {
        Ok(l) => l,
        Err(e) => {
            super::render(e);
            return ExitCode::from(2);
        }
    };
    let plugin_ref = if Path::new(target).is_file() {
        let name = Path::new(target)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .unwrap_or_else(|| target.to_string());
        crate::plan::PluginRef::File {
            name,
            path: target.into(),
            sha256: None,
        }
    } else if builtin::bytes(target).is_some() {
        crate::plan::PluginRef::Builtin(target.to_string())
    } else {
        eprintln!(
            "weir: `{target}` is neither a file nor a built-in plugin (built-ins: {})",
            builtin::names().join(", ")
        );
        return ExitCode::from(2);
    };
    let inspection = match loader.inspect(&plugin_ref).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };
    let code = if inspection.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if as_json {
        println!("{}", inspection_json(&inspection));
        return code;
    }
    let i = &inspection;
    let unknown = || "unknown (describe() was not called)".to_string();
    let m = i.manifest.as_ref();
    println!("name          {}", m.map_or(i.name.clone(), |m| m.name.clone()));
    println!(
        "kind          {}",
        i.kind.map_or("none (see problems)", kind_name)
    );
    println!("version       {}", m.map_or_else(unknown, |m| m.version.clone()));
    println!(
        "description   {}",
        m.map_or_else(unknown, |m| m.description.clone())
    );
    println!("source        {}", i.source);
    println!("size          {} bytes", i.size);
    println!("sha256        {}", i.sha256);
    println!(
        "compiled      {}",
        match i.compiled {
            crate::engine::CacheOutcome::Hit => "loaded from the compile cache",
            crate::engine::CacheOutcome::Compiled => "compiled now (and cached)",
        }
    );
    println!(
        "wit           {} ({})",
        exported_wit(&i.exports).unwrap_or_else(|| "unknown".into()),
        match &i.wit_package {
            Some(p) => format!("the component declares {p}"),
            None => "not declared: built without weir-sdk or `weir plugin build`".into(),
        }
    );
    println!(
        "capabilities  {}",
        match m {
            None => unknown(),
            Some(m) if m.capabilities.is_empty() => "none".to_string(),
            Some(m) => capabilities(&m.capabilities).join(", "),
        }
    );
    println!("imports");
    for import in &i.imports {
        let flag = if crate::plugins::kind::offered(import) {
            ""
        } else {
            "  ← not offered by weir"
        };
        println!("  {import}{flag}");
    }
    println!("exports");
    for export in &i.exports {
        println!("  {export}");
    }
    if let Some(schema) = m.and_then(|m| m.config_schema.as_ref()) {
        println!("config schema {schema}");
    }
    if i.problems.is_empty() {
        println!("problems      none");
    } else {
        println!("problems (weir would refuse to run it)");
        for problem in &i.problems {
            println!("  ✗ {problem}");
        }
    }
    code
}

fn capabilities(caps: &[Capability]) -> Vec<&'static str> {
    caps.iter().map(crate::plugins::capability_name).collect()
}

fn wit_version(info: &PluginInfo) -> Option<String> {
    exported_wit(&info.exports)
}

/// The weir WIT package its exports carry.
fn exported_wit(exports: &[String]) -> Option<String> {
    exports.iter().find_map(|e| {
        e.strip_prefix("weir:plugin/")
            .and_then(|r| r.split_once('@'))
            .map(|(_, v)| format!("weir:plugin@{v}"))
    })
}

fn inspection_json(i: &crate::plugins::Inspection) -> serde_json::Value {
    let m = i.manifest.as_ref();
    json!({
        "name": m.map_or(i.name.as_str(), |m| m.name.as_str()),
        "kind": i.kind.map(kind_name),
        "version": m.map(|m| &m.version),
        "description": m.map(|m| &m.description),
        "source": i.source,
        "size": i.size,
        "sha256": i.sha256,
        "wit": exported_wit(&i.exports),
        "contract": i.contract.map(|c| c.package()),
        "wit_declared": i.wit_package,
        "capabilities": m.map(|m| capabilities(&m.capabilities)),
        "imports": i.imports,
        "exports": i.exports,
        "config_schema": m.and_then(|m| m.config_schema.as_ref()),
        "problems": i.problems,
    })
}

fn info_json(info: &PluginInfo) -> serde_json::Value {
    json!({
        "name": info.manifest.name,
        "kind": kind_name(info.kind),
        "version": info.manifest.version,
        "description": info.manifest.description,
        "source": info.source,
        "size": info.size,
        "sha256": info.sha256,
        "wit": wit_version(info),
        "contract": info.contract.package(),
        "wit_declared": info.wit_package,
        "capabilities": capabilities(&info.manifest.capabilities),
        "imports": info.imports,
        "exports": info.exports,
        "config_schema": info.manifest.config_schema,
    })
}
