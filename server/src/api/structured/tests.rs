use serde_json::json;

use super::*;
use crate::api::error::ApiError;

fn param_of(e: ApiError) -> String {
    match e {
        ApiError::InvalidRequest { param, .. } => param.unwrap_or_default(),
        other => panic!("not a 400: {other:?}"),
    }
}

fn common(v: Value) -> CommonParams {
    serde_json::from_value(v).unwrap()
}

#[test]
fn each_field_maps_to_its_grammar() {
    let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}});
    let (spec, param) = grammar_spec(StructuredFields {
        response_format: Some(&rf),
        common: None,
    })
    .unwrap()
    .unwrap();
    assert_eq!(spec, GrammarSpec::JsonSchema(json!({"type": "object"})));
    assert_eq!(param, "response_format.json_schema.schema");

    let rf = json!({"type": "json_object"});
    let got = grammar_spec(StructuredFields {
        response_format: Some(&rf),
        common: None,
    })
    .unwrap();
    assert_eq!(got.unwrap().0, GrammarSpec::JsonObject);
    let rf = json!({"type": "text"});
    assert!(grammar_spec(StructuredFields {
        response_format: Some(&rf),
        common: None
    })
    .unwrap()
    .is_none());

    let cases = [
        (
            json!({"guided_json": "{\"type\": \"integer\"}"}),
            GrammarSpec::JsonSchema(json!({"type": "integer"})),
        ),
        (
            json!({"guided_regex": "a+"}),
            GrammarSpec::Regex("a+".into()),
        ),
        (
            json!({"guided_choice": ["a", "b"]}),
            GrammarSpec::Choice(vec!["a".into(), "b".into()]),
        ),
        (
            json!({"guided_grammar": "start: \"a\""}),
            GrammarSpec::Lark("start: \"a\"".into()),
        ),
        (
            json!({"structured_outputs": {"regex": "b+"}}),
            GrammarSpec::Regex("b+".into()),
        ),
        (
            json!({"structured_outputs": {"json_object": true}}),
            GrammarSpec::JsonObject,
        ),
    ];
    for (v, want) in cases {
        let c = common(v.clone());
        let got = grammar_spec(StructuredFields {
            response_format: None,
            common: Some(&c),
        });
        assert_eq!(got.unwrap().unwrap().0, want, "{v}");
    }
}

#[test]
fn bad_fields_name_themselves() {
    let rf_cases = [
        (json!({"type": "yaml"}), "response_format.type"),
        (json!({}), "response_format.type"),
        (
            json!({"type": "json_schema"}),
            "response_format.json_schema",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
            "response_format.json_schema.name",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a", "strict": "yes"}}),
            "response_format.json_schema.strict",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a", "schema": 3}}),
            "response_format.json_schema.schema",
        ),
    ];
    for (rf, param) in rf_cases {
        let e = grammar_spec(StructuredFields {
            response_format: Some(&rf),
            common: None,
        })
        .unwrap_err();
        assert_eq!(param_of(e), param, "{rf}");
    }
    let cases = [
        (json!({"guided_json": "{not json"}), "guided_json"),
        (json!({"guided_regex": ""}), "guided_regex"),
        (json!({"guided_choice": []}), "guided_choice"),
        (json!({"guided_choice": ["a", 1]}), "guided_choice"),
        (json!({"guided_grammar": 5}), "guided_grammar"),
        (
            json!({"structured_outputs": {"xml": "a"}}),
            "structured_outputs.xml",
        ),
        (json!({"structured_outputs": 1}), "structured_outputs"),
        (
            json!({"guided_regex": "a", "guided_choice": ["b"]}),
            "guided_choice",
        ),
    ];
    for (v, param) in cases {
        let c = common(v.clone());
        let e = grammar_spec(StructuredFields {
            response_format: None,
            common: Some(&c),
        })
        .unwrap_err();
        assert_eq!(param_of(e), param, "{v}");
    }
}
