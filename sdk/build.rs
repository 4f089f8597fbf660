//! Generates the per-kind export macros.
//!
//! Each `export_*!` macro expands, in the plugin's crate, to a
//! `wit_bindgen::generate!` call for that kind's world only. (Generating
//! all five worlds here would link all five worlds' type sections into
//! every plugin, and the component would then claim to export every kind.)
//! `generate!` needs the WIT as a literal, so this script inlines the text
//! of `wit/` into the macros.

use std::fmt::Write as _;
use std::path::Path;

const KINDS: [(&str, &str, &str, &str); 5] = [
    // macro, world, trait, exported interface
    ("export_stage", "stage-plugin", "Stage", "stage"),
    ("export_analyzer", "analyzer-plugin", "Analyzer", "analyzer"),
    (
        "export_test_runner",
        "test-runner-plugin",
        "TestRunner",
        "test_runner",
    ),
    ("export_strategy", "strategy-plugin", "Strategy", "strategy"),
    ("export_deployer", "deployer-plugin", "Deployer", "deployer"),
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit_dir = Path::new(&manifest_dir).join("../wit");
    println!("cargo:rerun-if-changed={}", wit_dir.display());

    let mut files: Vec<_> = std::fs::read_dir(&wit_dir)
        .expect("wit/ is beside sdk/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    files.sort();
    let mut package = None;
    let mut body = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable wit file");
        for line in text.lines() {
            if line.starts_with("package ") {
                package.get_or_insert_with(|| line.to_string());
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    let package = package.expect("the wit files declare a package");
    let wit = format!("{package}\n{body}");
    let pkg_id = package
        .trim_start_matches("package ")
        .trim_end_matches(';')
        .trim()
        .to_string();
    let pkg_len = pkg_id.len();

    let mut out = String::new();
    for (mac, world, tr, iface) in KINDS {
        let dispatch = match tr {
            "Stage" => {
                "fn run(ctx: ::weir_sdk::Context) -> ::core::result::Result<::weir_sdk::StageOutput, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Stage>::run(ctx) }"
            }
            "Analyzer" => {
                "fn analyze(ctx: ::weir_sdk::Context) -> ::core::result::Result<::weir_sdk::Analysis, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Analyzer>::analyze(ctx) }"
            }
            "TestRunner" => {
                "fn run_tests(ctx: ::weir_sdk::Context) -> ::core::result::Result<::weir_sdk::TestReport, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::TestRunner>::run_tests(ctx) }"
            }
            "Strategy" => {
                "fn next(ctx: ::weir_sdk::Context, state: ::weir_sdk::RolloutState) -> ::core::result::Result<::weir_sdk::Action, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Strategy>::next(ctx, state) }"
            }
            _ => concat!(
                "fn deploy(ctx: ::weir_sdk::Context, release: ::weir_sdk::Release) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::deploy(ctx, release) }\n",
                "fn set_traffic(ctx: ::weir_sdk::Context, service: ::std::string::String, weights: ::std::vec::Vec<(::std::string::String, u32)>) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::set_traffic(ctx, service, weights) }\n",
                "fn scale(ctx: ::weir_sdk::Context, service: ::std::string::String, version: ::std::string::String, replicas: u32) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::scale(ctx, service, version, replicas) }\n",
                "fn promote(ctx: ::weir_sdk::Context, service: ::std::string::String, version: ::std::string::String) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::promote(ctx, service, version) }\n",
                "fn rollback(ctx: ::weir_sdk::Context, service: ::std::string::String, version: ::std::string::String) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::rollback(ctx, service, version) }\n",
                "fn status(ctx: ::weir_sdk::Context, service: ::std::string::String) -> ::core::result::Result<::weir_sdk::DeploymentStatus, ::weir_sdk::Failure> { <$plugin as ::weir_sdk::Deployer>::status(ctx, service) }",
            ),
        };
        writeln!(
            out,
            r#"/// Export `$plugin`, which implements [`{tr}`], as this crate's
/// `{world}` component. Use it once, at the crate root.
#[macro_export]
macro_rules! {mac} {{
    ($plugin:ty) => {{
        #[doc(hidden)]
        #[allow(missing_docs, clippy::all)]
        mod __weir_bindings {{
            ::weir_sdk::__rt::wit_bindgen::generate!({{
                inline: {wit:?},
                world: "weir:plugin/{world}",
                runtime_path: "::weir_sdk::__rt::wit_bindgen::rt",
                with: {{
                    "weir:plugin/types@0.1.0": ::weir_sdk::wit::weir::plugin::types,
                    "weir:plugin/log@0.1.0": ::weir_sdk::wit::weir::plugin::log,
                    "weir:plugin/process@0.1.0": ::weir_sdk::wit::weir::plugin::process,
                    "weir:plugin/metrics@0.1.0": ::weir_sdk::wit::weir::plugin::metrics,
                    "weir:plugin/secrets@0.1.0": ::weir_sdk::wit::weir::plugin::secrets,
                    "weir:plugin/runtime@0.1.0": ::weir_sdk::wit::weir::plugin::runtime,
                }},
            }});
        }}
        #[doc(hidden)]
        struct __WeirExport;
        impl __weir_bindings::exports::weir::plugin::plugin::Guest for __WeirExport {{
            fn describe() -> ::weir_sdk::Manifest {{ <$plugin as ::weir_sdk::Plugin>::manifest() }}
        }}
        impl __weir_bindings::exports::weir::plugin::{iface}::Guest for __WeirExport {{
            {dispatch}
        }}
        /// The WIT package this plugin was built against, for the host to
        /// read before instantiating.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "weir-wit-package")]
        #[used]
        static __WEIR_WIT_PACKAGE: [u8; {pkg_len}] = *b"{pkg_id}";
        __weir_bindings::export!(__WeirExport with_types_in __weir_bindings);
    }};
}}
"#
        )
        .expect("writing to a String");
    }
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out_dir).join("export_macros.rs"), out).expect("OUT_DIR is writable");
}
