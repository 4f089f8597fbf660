//! `weir plugins list` and `weir plugins inspect`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::prepare::loader;
use crate::bindings::types::Capability;
use crate::plugins::{PluginInfo, builtin, kind_name};

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
    let info = match loader.load(&plugin_ref).await {
        Ok(p) => p.info.clone(),
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(2);
        }
    };
    if as_json {
        println!("{}", info_json(&info));
        return ExitCode::SUCCESS;
    }
    let m = &info.manifest;
    let caps = capabilities(&m.capabilities);
    println!("name          {}", m.name);
    println!("kind          {}", kind_name(info.kind));
    println!("version       {}", m.version);
    println!("description   {}", m.description);
    println!("source        {}", info.source);
    println!("size          {} bytes", info.size);
    println!("sha256        {}", info.sha256);
    println!(
        "compiled      {}",
        match info.compiled {
            crate::engine::CacheOutcome::Hit => "loaded from the compile cache",
            crate::engine::CacheOutcome::Compiled => "compiled now (and cached)",
        }
    );
    println!(
        "wit           {} ({})",
        wit_version(&info).unwrap_or_else(|| "unknown".into()),
        match &info.wit_package {
            Some(p) => format!("its weir-sdk declares {p}"),
            None => "no weir-sdk declaration: built without weir-sdk".into(),
        }
    );
    println!(
        "capabilities  {}",
        if caps.is_empty() {
            "none".to_string()
        } else {
            caps.join(", ")
        }
    );
    println!("imports");
    for i in &info.imports {
        println!("  {i}");
    }
    println!("exports");
    for e in &info.exports {
        println!("  {e}");
    }
    if let Some(schema) = &m.config_schema {
        println!("config schema {schema}");
    }
    ExitCode::SUCCESS
}

fn capabilities(caps: &[Capability]) -> Vec<&'static str> {
    caps.iter()
        .map(|c| match c {
            Capability::Process => "process",
            Capability::Network => "network",
            Capability::Metrics => "metrics",
            Capability::Secrets => "secrets",
            Capability::Runtime => "runtime",
            Capability::Files => "files",
        })
        .collect()
}

fn wit_version(info: &PluginInfo) -> Option<String> {
    info.exports.iter().find_map(|e| {
        e.strip_prefix("weir:plugin/")
            .and_then(|r| r.split_once('@'))
            .map(|(_, v)| format!("weir:plugin@{v}"))
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
        "wit_declared": info.wit_package,
        "capabilities": capabilities(&info.manifest.capabilities),
        "imports": info.imports,
        "exports": info.exports,
        "config_schema": info.manifest.config_schema,
    })
}
