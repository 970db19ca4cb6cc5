use serde::Deserialize;

use super::*;

/// The path `T`'s error names when parsing `json`.
fn path_of<T: for<'de> Deserialize<'de>>(json: &str) -> String {
    let err = serde_json::from_str::<T>(json).err().expect("an error");
    error_path(json.as_bytes(), &err)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Outer {
    #[serde(default)]
    items: Vec<Inner>,
    #[serde(default)]
    map: std::collections::BTreeMap<String, Inner>,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    lang: Option<OneOrMany>,
    #[serde(default)]
    grid: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Inner {
    name: String,
    #[serde(default)]
    size: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Small,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[test]
fn a_wrong_value_names_its_member() {
    assert_eq!(
        path_of::<Outer>(r#"{"items": [{"name": "a"}, {"name": "b", "size": 300}]}"#),
        "items[1].size"
    );
    assert_eq!(path_of::<Outer>(r#"{"items": [{"name": 5}]}"#), "items[0].name");
    assert_eq!(path_of::<Outer>(r#"{"grid": [[1], [2, "x"]]}"#), "grid[1][1]");
    assert_eq!(
        path_of::<Outer>(r#"{"map": {"k.x": {"name": "a", "size": -1}}}"#),
        "map.k.x.size"
    );
    assert_eq!(path_of::<Outer>(r#"{"kind": "big"}"#), "kind");
    assert_eq!(path_of::<Outer>(r#"{"kind": {"big": 1}}"#), "kind");
    assert_eq!(path_of::<Outer>("5"), "");
}

#[test]
fn a_container_of_the_wrong_kind_is_named_at_its_bracket() {
    assert_eq!(path_of::<Outer>(r#"{"grid": [[1], {"a": 1}]}"#), "grid[1]");
    assert_eq!(
        path_of::<Outer>(r#"{"items": [{"name": "a"}, [["x"]]]}"#),
        "items[1][0]"
    );
    assert_eq!(path_of::<Outer>(r#"{"items": [[1]]}"#), "items[0][0]");
    assert_eq!(path_of::<Outer>(r#"{"items": {"name": "a"}}"#), "items");
    assert_eq!(path_of::<Outer>(r#"{"grid": [{}]}"#), "grid[0]");
}

#[test]
fn an_unknown_field_is_named_with_its_key() {
    assert_eq!(
        path_of::<Outer>(r#"{"items": [{"name": "a", "colour": 1}]}"#),
        "items[0].colour"
    );
    assert_eq!(path_of::<Outer>(r#"{"bogus": 1}"#), "bogus");
}

#[test]
fn a_missing_field_names_the_object_that_lacks_it() {
    assert_eq!(
        path_of::<Outer>(r#"{"items": [{"name": "a"}, {"size": 1}]}"#),
        "items[1]"
    );
    assert_eq!(path_of::<Outer>(r#"{"items": [{"size": 1}], "grid": []}"#), "items[0]");
    assert_eq!(path_of::<Outer>(r#"{"map": {"a": {}}}"#), "map.a");
    assert_eq!(path_of::<Inner>(r#"{"size": 1}"#), "");
}

#[test]
fn an_untagged_enum_is_named_where_serde_read_it_whole() {
    assert_eq!(path_of::<Outer>(r#"{"lang": 5}"#), "lang");
    assert_eq!(path_of::<Outer>(r#"{"lang": ["de", 5]}"#), "lang");
    assert_eq!(path_of::<Outer>(r#"{"lang": ["de", 5], "grid": []}"#), "lang");
    assert_eq!(
        path_of::<Outer>("{\n  \"lang\": [\"de\", 5],\n  \"grid\": []\n}"),
        "lang"
    );
    assert_eq!(path_of::<Outer>(r#"{"lang": {}, "grid": []}"#), "lang");
}

#[test]
fn keys_are_decoded_and_strings_may_hold_brackets_and_quotes() {
    assert_eq!(
        path_of::<Outer>(r#"{"map": {"a\"]}[,:\\": {"name": "}]\"[{,", "size": "x"}}}"#),
        r#"map.a"]}[,:\.size"#
    );
    assert_eq!(
        path_of::<Outer>(r#"{"map": {"\u00e9t\u00e9": {"name": 1}}}"#),
        "map.été.name"
    );
    assert_eq!(
        path_of::<Outer>(r#"{"map": {"日本": {"name": "語", "size": true}}}"#),
        "map.日本.size"
    );
}

#[test]
fn lines_and_columns_become_byte_offsets() {
    let json = "{\n  \"items\": [\n    {\"name\": \"é\", \"size\": \"x\"}\n  ]\n}";
    assert_eq!(path_of::<Outer>(json), "items[0].size");
    assert_eq!(error_offset(b"ab\ncd\nef", 3, 1), 7);
    assert_eq!(error_offset(b"ab\ncd", 1, 2), 2);
    assert_eq!(error_offset(b"ab", 9, 9), 2);
    assert_eq!(error_offset(b"ab", 0, 0), 0);
}

#[test]
fn each_offset_of_a_document_gives_a_path() {
    let json = br#"{"a": [1, {"b": "x]"}, [2]], "c": {"d": null}}"#;
    let at = |offset| path_at(json, offset, Reading::Other);
    assert_eq!(at(0), "");
    assert_eq!(at(1), "");
    assert_eq!(at(4), "a");
    assert_eq!(at(8), "a[0]");
    assert_eq!(at(14), "a[1].b");
    assert_eq!(at(20), "a[1].b");
    assert_eq!(at(json.len()), "c");
}

#[test]
fn malformed_text_never_panics() {
    let texts: &[&[u8]] = &[
        b"",
        b"}}]]",
        b"{\"a\":",
        b"{\"a",
        b"[\"\\",
        b"{\"\\u12\":1}",
        b"{\"\xff\xfe\": [1,,]}",
        b"[[[[[[[[[[",
        b":::,,,\"",
        b"{1:2}",
    ];
    let readings = [
        Reading::Other,
        Reading::MissingField("a".into()),
        Reading::ContainerType,
        Reading::DuplicateField,
    ];
    for text in texts {
        for offset in 0..=text.len() + 2 {
            for reading in &readings {
                let _ = path_at(text, offset, reading.clone());
            }
        }
    }
    let deep = "[".repeat(100_000);
    assert_eq!(
        path_at(deep.as_bytes(), deep.len(), Reading::Other).len(),
        3 * MAX_FRAMES - 3
    );
}

#[test]
fn messages_are_read_for_where_they_are_raised() {
    assert_eq!(
        Reading::of("missing field `name` at line 1 column 2"),
        Reading::MissingField("name".into())
    );
    assert_eq!(
        Reading::of("invalid type: map, expected a string"),
        Reading::ContainerType
    );
    assert_eq!(
        Reading::of("invalid type: integer `5`, expected a string"),
        Reading::Other
    );
    assert_eq!(
        Reading::of("unknown variant `x`, expected `y`"),
        Reading::UnknownVariant
    );
}
