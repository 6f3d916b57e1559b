//! Stored configuration documents as the Spring Cloud Config Server serves them: YAML,
//! JSON and properties flattened, merged with placeholders resolved, nested and rendered
//! as YAML and properties. Never a panic, and the YAML rendered reads back.
#![no_main]
use signalbox_control::spring;
use std::collections::BTreeMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut props = BTreeMap::new();
    for key in ["application.yml", "x.json", "app.properties", "plain"] {
        spring::flatten_entry(key, text, &["prod"], &mut props);
    }
    let merged = spring::merge(&[("fuzz".to_owned(), props)]);
    let nested = spring::nest(&merged);
    let yaml = spring::to_yaml(&nested);
    assert!(yaml_rust2::YamlLoader::load_from_str(&yaml).is_ok(), "{yaml}");
    let _ = spring::to_properties(&merged);
    let _ = spring::resolve_placeholders(text, &merged);
});
