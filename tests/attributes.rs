//! Sign-up form decoding through the public API: fixed cases, and the
//! properties that decoding is total, stays within the spec, round-trips,
//! accepts every value within a valid spec and rejects values outside the
//! choices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use guestpass::flow::attributes::{
    AttributeDefinition, AttributeValue, AttributeValues, BuiltInAttribute, CollectedAttributes, DataType,
    ExtensionAttributeName, FieldError, FormError, InputType, MAX_BODY_LEN, UserAttributeValue,
};
use guestpass::id::Id;
use guestpass::mail::templates::Language;
use proptest::prelude::*;

const APP: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

fn ext(short: &str) -> ExtensionAttributeName {
    ExtensionAttributeName::new(APP.parse::<Id>().unwrap(), short).unwrap()
}

fn choice(v: &str) -> UserAttributeValue {
    UserAttributeValue::new(v, v)
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// One attribute of every data type and input type.
fn full_spec() -> CollectedAttributes {
    CollectedAttributes::new(vec![
        AttributeDefinition::built_in(BuiltInAttribute::GivenName),
        AttributeDefinition::built_in(BuiltInAttribute::Email).optional(),
        AttributeDefinition::built_in(BuiltInAttribute::PostalCode)
            .optional()
            .length(Some(4), Some(7))
            .pattern("[0-9]{4} ?[A-Z]{0,2}"),
        AttributeDefinition::built_in(BuiltInAttribute::Country)
            .optional()
            .input(InputType::DropdownSingleSelect)
            .choice(choice("NL"))
            .choice(choice("DE")),
        AttributeDefinition::custom(ext("employees"), DataType::Int64, "Employees").optional(),
        AttributeDefinition::custom(ext("tier"), DataType::Int64, "Tier")
            .optional()
            .input(InputType::RadioSingleSelect)
            .choice(choice("1"))
            .choice(choice("-2")),
        AttributeDefinition::custom(ext("terms"), DataType::Boolean, "Terms"),
        AttributeDefinition::custom(ext("news"), DataType::Boolean, "News")
            .optional()
            .input(InputType::RadioSingleSelect)
            .choice(UserAttributeValue::new("true", "Yes"))
            .choice(UserAttributeValue::new("false", "No")),
        AttributeDefinition::custom(ext("topics"), DataType::StringCollection, "Topics")
            .optional()
            .choice(choice("red"))
            .choice(choice("green"))
            .choice(choice("blue")),
        AttributeDefinition::custom(ext("founded"), DataType::DateTime, "Founded").optional(),
    ])
    .unwrap()
}

/// Checks an accepted result against the spec, independently of the decoder.
fn assert_satisfies(spec: &CollectedAttributes, values: &AttributeValues) {
    for a in spec.attributes() {
        if a.is_required() {
            assert!(
                values.get(a.name().as_str()).is_some(),
                "required `{}` missing",
                a.name()
            );
        }
    }
    let mut last_index = None;
    for (name, value) in values.iter() {
        let index = spec.attributes().iter().position(|a| a.name() == name);
        let a = &spec.attributes()[index.expect("only attributes of the spec")];
        assert!(last_index < index, "spec order");
        last_index = index;
        assert_eq!(value.data_type(), a.data_type(), "{name}");
        let in_choices = |v: &str| a.choices().iter().any(|c| c.value == v);
        match value {
            AttributeValue::String(s) => {
                assert!(!s.is_empty() && s.trim() == s, "{name}: {s:?}");
                assert!(!s.chars().any(char::is_control), "{name}: {s:?}");
                if a.input_type().is_select() {
                    assert!(in_choices(s), "{name}: {s:?}");
                } else {
                    let n = s.chars().count() as u32;
                    assert!(n >= a.min_length(), "{name}: {s:?}");
                    assert!(n <= a.max_length().unwrap(), "{name}: {s:?}");
                    assert!(a.matches_pattern(s), "{name}: {s:?}");
                }
            }
            AttributeValue::Int64(n) => {
                if a.input_type().is_select() {
                    assert!(in_choices(&n.to_string()), "{name}: {n}");
                }
            }
            AttributeValue::Boolean(b) => {
                if a.input_type().is_select() {
                    assert!(in_choices(&b.to_string()), "{name}: {b}");
                }
                if a.input_type() == InputType::CheckboxSingleSelect && a.is_required() {
                    assert!(*b, "{name}: a required check box is checked");
                }
            }
            AttributeValue::StringCollection(v) => {
                assert!(!v.is_empty(), "{name}");
                let positions: Vec<usize> = v
                    .iter()
                    .map(|s| a.choices().iter().position(|c| &c.value == s).expect("a choice"))
                    .collect();
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "{name}: unique, in order"
                );
            }
            AttributeValue::DateTime(d) => {
                assert!(d.year() >= 1 && d.year() <= 9999, "{name}: {d}");
            }
            other => panic!("unexpected value {other:?}"),
        }
    }
}

#[test]
fn decodes_a_complete_submission() {
    let spec = full_spec();
    let p = |k: &str| {
        if k.contains('_') || BuiltInAttribute::from_name(k).is_some() {
            k.to_owned()
        } else {
            ext(k).as_str().to_owned()
        }
    };
    let body = encode(&[
        (p("givenName"), " Grace ".into()),
        (p("email"), "grace@navy.example".into()),
        (p("postalCode"), "1234 AB".into()),
        (p("country"), "NL".into()),
        (p("employees"), "00120".into()),
        (p("tier"), "-2".into()),
        (p("terms"), "true".into()),
        (p("news"), "false".into()),
        (p("topics"), "blue".into()),
        (p("topics"), "red".into()),
        (p("founded"), "1906-12-09".into()),
        ("csrf_token".into(), "abc".into()),
    ]);
    let values = spec.decode_form(body.as_bytes(), &["csrf_token"]).unwrap();
    assert_eq!(values.len(), 10);
    assert_satisfies(&spec, &values);
    assert_eq!(
        values.get(ext("employees").as_str()),
        Some(&AttributeValue::Int64(120))
    );
    assert_eq!(
        values.get(ext("topics").as_str()),
        Some(&AttributeValue::StringCollection(vec![
            "red".into(),
            "blue".into()
        ]))
    );
    assert_eq!(
        values.get(ext("news").as_str()),
        Some(&AttributeValue::Boolean(false))
    );
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let spec = CollectedAttributes::new(vec![AttributeDefinition::built_in(BuiltInAttribute::City)]).unwrap();
    let values = spec.decode_form(b"city=K%FFln", &[]).unwrap();
    assert_eq!(
        values.get("city"),
        Some(&AttributeValue::String("K\u{FFFD}ln".into()))
    );
}

#[test]
fn unknown_and_oversized_forms_are_form_errors() {
    let spec = full_spec();
    let body = format!("givenName=A&{}=true&nickname=x", ext("terms"));
    let e = spec.decode_form(body.as_bytes(), &[]).unwrap_err();
    assert!(e.fields().is_empty(), "{e}");
    assert_eq!(
        e.form(),
        Some(&FormError::UnknownFields {
            names: vec!["nickname".into()],
            count: 1
        })
    );
    assert!(e.to_string().contains("`nickname`"), "{e}");
    let big = format!("givenName={}", "a".repeat(MAX_BODY_LEN));
    let e = spec.decode_form(big.as_bytes(), &[]).unwrap_err();
    assert!(matches!(e.form(), Some(FormError::TooLarge { .. })));
    assert!(e.fields().is_empty());
}

#[test]
fn messages_in_three_languages() {
    let spec = full_spec().with_default_language(Language::DeDe);
    let e = spec.decode_form(b"", &[]).unwrap_err();
    assert!(matches!(
        e.fields(),
        [FieldError::Required { .. }, FieldError::Required { .. }]
    ));
    assert_eq!(
        e.messages(Language::EnUs, &spec),
        ["Please fill in “Given Name”", "Please check “Terms”"]
    );
    assert_eq!(
        e.messages(Language::DeDe, &spec),
        ["Bitte füllen Sie „Vorname“ aus", "Bitte bestätigen Sie „Terms“"]
    );
    assert_eq!(
        e.messages(Language::NlNl, &spec),
        ["Vul ‘Voornaam’ in", "Vink ‘Terms’ aan"]
    );
}

#[test]
fn config_json_is_graph_shaped() {
    let spec = CollectedAttributes::from_json(
        r#"[{"name": "jobTitle", "isOptional": true, "maxLength": 20,
             "label": {"en-US": "Role", "de-DE": "Rolle"}}]"#,
    )
    .unwrap();
    let a = &spec.attributes()[0];
    assert_eq!(a.max_length(), Some(20));
    assert_eq!(a.label(Language::DeDe, Language::EnUs), "Rolle");
    assert_eq!(a.label(Language::NlNl, Language::EnUs), "Role");
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(
        json,
        r#"[{"name":"jobTitle","isOptional":true,"label":{"de-DE":"Rolle","en-US":"Role"},"maxLength":20}]"#
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Field names: the spec's own, a reserved one, and noise.
fn field_name() -> impl Strategy<Value = String> {
    let spec = full_spec();
    let mut names: Vec<String> = spec.attributes().iter().map(|a| a.name().to_string()).collect();
    names.push("csrf".into());
    prop_oneof![
        4 => proptest::sample::select(names),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

/// Field values: what the spec accepts, near misses, and noise.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "",
            " ",
            "true",
            "false",
            "NL",
            "DE",
            "1",
            "-2",
            "red",
            "green",
            "blue",
            "1234 AB",
            "1234",
            "2024-02-29",
            "2023-02-29",
            "a@b.example",
            "9223372036854775808",
            "-0",
            "\u{0}",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,20}",
        any::<String>(),
        "[0-9-]{0,22}",
    ]
}

/// Random fields, mostly after the two the spec requires (so that many
/// submissions are accepted and their values checked).
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let required = vec![
        ("givenName".to_owned(), "Ada".to_owned()),
        (ext("terms").to_string(), "true".to_owned()),
    ];
    (
        proptest::bool::weighted(0.8),
        proptest::collection::vec((field_name(), field_value()), 0..8),
    )
        .prop_map(move |(with_required, mut random)| {
            if with_required {
                let mut all = required.clone();
                all.append(&mut random);
                all
            } else {
                random
            }
        })
}

/// A random attribute whose values the test can generate within bounds.
#[derive(Debug, Clone)]
enum Plan {
    Text { min: u32, max: u32, required: bool },
    Int { required: bool },
    IntSelect { choices: Vec<i64>, required: bool },
    Check { required: bool },
    BoolSelect { choices: Vec<bool>, dropdown: bool },
    StrSelect { choices: Vec<String>, required: bool },
    Multi { choices: Vec<String>, required: bool },
    Date { required: bool },
}

fn plan() -> impl Strategy<Value = Plan> {
    let choices = proptest::collection::btree_set("[a-zA-Z0-9][a-zA-Z0-9 .]{0,8}[a-zA-Z0-9]", 1..6)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    prop_oneof![
        (0u32..20, 1u32..40, any::<bool>()).prop_map(|(a, b, required)| Plan::Text {
            min: a.min(b),
            max: a.max(b),
            required
        }),
        any::<bool>().prop_map(|required| Plan::Int { required }),
        (proptest::collection::btree_set(any::<i64>(), 1..5), any::<bool>()).prop_map(|(c, required)| {
            Plan::IntSelect {
                choices: c.into_iter().collect(),
                required,
            }
        }),
        any::<bool>().prop_map(|required| Plan::Check { required }),
        (
            prop_oneof![Just(vec![true]), Just(vec![false]), Just(vec![true, false])],
            any::<bool>()
        )
            .prop_map(|(choices, dropdown)| Plan::BoolSelect { choices, dropdown }),
        (choices.clone(), any::<bool>())
            .prop_map(|(choices, required)| Plan::StrSelect { choices, required }),
        (choices, any::<bool>()).prop_map(|(choices, required)| Plan::Multi { choices, required }),
        any::<bool>().prop_map(|required| Plan::Date { required }),
    ]
}

fn definition(i: usize, p: &Plan) -> AttributeDefinition {
    let name = ext(&format!("a{i}"));
    let req = |d: AttributeDefinition, required: bool| if required { d } else { d.optional() };
    let choose =
        |d: AttributeDefinition, values: Vec<String>| values.into_iter().fold(d, |d, v| d.choice(choice(&v)));
    match p {
        Plan::Text { min, max, required } => req(
            AttributeDefinition::custom(name, DataType::String, "T").length(Some(*min), Some(*max)),
            *required,
        ),
        Plan::Int { required } => req(AttributeDefinition::custom(name, DataType::Int64, "I"), *required),
        Plan::IntSelect { choices, required } => req(
            choose(
                AttributeDefinition::custom(name, DataType::Int64, "I")
                    .input(InputType::DropdownSingleSelect),
                choices.iter().map(i64::to_string).collect(),
            ),
            *required,
        ),
        Plan::Check { required } => req(
            AttributeDefinition::custom(name, DataType::Boolean, "C"),
            *required,
        ),
        Plan::BoolSelect { choices, dropdown } => choose(
            AttributeDefinition::custom(name, DataType::Boolean, "B").input(if *dropdown {
                InputType::DropdownSingleSelect
            } else {
                InputType::RadioSingleSelect
            }),
            choices.iter().map(bool::to_string).collect(),
        ),
        Plan::StrSelect { choices, required } => req(
            choose(
                AttributeDefinition::custom(name, DataType::String, "S").input(InputType::RadioSingleSelect),
                choices.clone(),
            ),
            *required,
        ),
        Plan::Multi { choices, required } => req(
            choose(
                AttributeDefinition::custom(name, DataType::StringCollection, "M"),
                choices.clone(),
            ),
            *required,
        ),
        Plan::Date { required } => req(
            AttributeDefinition::custom(name, DataType::DateTime, "D"),
            *required,
        ),
    }
}

/// Random material from which a value within the plan's bounds is made.
#[derive(Debug, Clone)]
struct Material {
    text: String,
    number: i64,
    index: usize,
    mask: u8,
    date: (i32, u8, u8),
}

fn material() -> impl Strategy<Value = Material> {
    (
        "[\\p{L}\\p{N} \\-]{0,50}",
        any::<i64>(),
        any::<usize>(),
        any::<u8>(),
        (1i32..=9999, 1u8..=12, 1u8..=28),
    )
        .prop_map(|(text, number, index, mask, date)| Material {
            text,
            number,
            index,
            mask,
            date,
        })
}

/// A value within bounds, or `None` for an optional attribute left empty.
fn value_for(p: &Plan, m: &Material) -> Option<AttributeValue> {
    let pick = |n: usize| m.index % n;
    Some(match p {
        Plan::Text { min, max, required } => {
            let mut s: String = m.text.trim().chars().take(*max as usize).collect();
            s = s.trim().to_owned();
            while s.chars().count() < *min as usize {
                s.push('x');
            }
            if s.is_empty() {
                if *required {
                    s.push('x');
                } else {
                    return None;
                }
            }
            AttributeValue::String(s)
        }
        Plan::Int { .. } => AttributeValue::Int64(m.number),
        Plan::IntSelect { choices, .. } => AttributeValue::Int64(choices[pick(choices.len())]),
        Plan::Check { required } => AttributeValue::Boolean(*required || m.mask & 1 == 1),
        Plan::BoolSelect { choices, .. } => AttributeValue::Boolean(choices[pick(choices.len())]),
        Plan::StrSelect { choices, .. } => AttributeValue::String(choices[pick(choices.len())].clone()),
        Plan::Multi { choices, required } => {
            let mut chosen: Vec<String> = choices
                .iter()
                .enumerate()
                .filter(|(i, _)| m.mask & (1 << i) != 0)
                .map(|(_, c)| c.clone())
                .collect();
            if chosen.is_empty() {
                if *required {
                    chosen.push(choices[pick(choices.len())].clone());
                } else {
                    return None;
                }
            }
            AttributeValue::StringCollection(chosen)
        }
        Plan::Date { .. } => {
            let (y, mo, d) = m.date;
            let month = time::Month::try_from(mo).unwrap();
            AttributeValue::DateTime(time::Date::from_calendar_date(y, month, d).unwrap())
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let spec = full_spec();
        if let Ok(values) = spec.decode_form(&body, &["csrf"]) {
            assert_satisfies(&spec, &values);
        }
    }

    #[test]
    fn random_forms_are_decoded_within_the_spec(pairs in pairs()) {
        let spec = full_spec();
        let body = encode(&pairs);
        match spec.decode_form(body.as_bytes(), &["csrf"]) {
            Ok(values) => assert_satisfies(&spec, &values),
            Err(e) => {
                prop_assert!(e.form().is_some() || !e.fields().is_empty());
                // One error per attribute at most, each about an attribute of the spec.
                for (i, f) in e.fields().iter().enumerate() {
                    prop_assert!(spec.get(f.name().as_str()).is_some());
                    prop_assert!(e.fields()[..i].iter().all(|g| g.name() != f.name()));
                    for lang in Language::ALL {
                        prop_assert!(!f.message(lang, &spec).is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn accepted_values_round_trip(pairs in pairs()) {
        let spec = full_spec();
        let body = encode(&pairs);
        if let Ok(values) = spec.decode_form(body.as_bytes(), &["csrf"]) {
            let again = spec.decode_form(values.to_form_body().as_bytes(), &[]);
            prop_assert_eq!(again, Ok(values));
        }
    }

    #[test]
    fn values_within_a_valid_spec_are_accepted(
        plans in proptest::collection::vec(plan(), 1..8),
        materials in proptest::collection::vec(material(), 8),
        shuffle in any::<bool>(),
    ) {
        let definitions: Vec<_> = plans.iter().enumerate().map(|(i, p)| definition(i, p)).collect();
        let spec = CollectedAttributes::new(definitions).expect("a valid spec");
        let mut expected = Vec::new();
        let mut pairs = Vec::new();
        for (i, (p, m)) in plans.iter().zip(&materials).enumerate() {
            let name = spec.attributes()[i].name().to_string();
            match value_for(p, m) {
                Some(v) => {
                    for fv in v.form_values() {
                        pairs.push((name.clone(), fv));
                    }
                    expected.push((name, v));
                }
                None => {
                    // An unchecked optional check box reads as false.
                    if matches!(p, Plan::Check { .. }) {
                        expected.push((name, AttributeValue::Boolean(false)));
                    }
                }
            }
        }
        if shuffle {
            pairs.reverse();
        }
        let values = spec.decode_form(encode(&pairs).as_bytes(), &[]);
        let values = values.map_err(|e| e.to_string());
        prop_assert!(values.is_ok(), "{:?}", values);
        let values = values.unwrap();
        let got: Vec<(String, AttributeValue)> =
            values.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        prop_assert_eq!(got, expected);
        assert_satisfies(&spec, &values);
    }

    #[test]
    fn values_outside_the_choices_are_rejected(
        choices in proptest::collection::btree_set("[a-z]{1,6}", 1..6),
        candidate in "\\PC{1,12}",
        kind in 0usize..4,
    ) {
        let candidate = candidate.trim().to_owned();
        prop_assume!(!candidate.is_empty() && !choices.contains(&candidate));
        let name = ext("pick");
        let (data_type, input) = match kind {
            0 => (DataType::String, InputType::RadioSingleSelect),
            1 => (DataType::String, InputType::DropdownSingleSelect),
            2 => (DataType::StringCollection, InputType::CheckboxMultiSelect),
            _ => (DataType::Int64, InputType::DropdownSingleSelect),
        };
        let choices: Vec<String> = if data_type == DataType::Int64 {
            (0..choices.len() as i64).map(|n| n.to_string()).collect()
        } else {
            choices.into_iter().collect()
        };
        prop_assume!(!choices.contains(&candidate));
        let def = choices.iter().fold(
            AttributeDefinition::custom(name.clone(), data_type, "Pick").optional().input(input),
            |d, c| d.choice(choice(c)),
        );
        let spec = CollectedAttributes::new(vec![def]).unwrap();
        let mut pairs = vec![(name.to_string(), candidate.clone())];
        if data_type == DataType::StringCollection {
            pairs.push((name.to_string(), choices[0].clone()));
        }
        let e = spec.decode_form(encode(&pairs).as_bytes(), &[]).unwrap_err();
        prop_assert_eq!(e.form(), None);
        prop_assert_eq!(e.fields().len(), 1);
        let f = &e.fields()[0];
        let digits = candidate.strip_prefix('-').unwrap_or(&candidate);
        let integer_form = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let fits = candidate.parse::<i64>().is_ok();
        match f {
            FieldError::NotAllowed { .. } => {
                prop_assert!(data_type != DataType::Int64 || (integer_form && fits));
            }
            FieldError::NotANumber { .. } => {
                prop_assert!(data_type == DataType::Int64 && !integer_form);
            }
            FieldError::OutOfRange { .. } => {
                prop_assert!(data_type == DataType::Int64 && integer_form && !fits);
            }
            FieldError::ControlCharacter { .. } => {
                prop_assert!(candidate.chars().any(char::is_control));
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
