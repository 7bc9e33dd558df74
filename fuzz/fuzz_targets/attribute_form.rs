//! Sign-up form decoding: never panics, and whatever it accepts satisfies
//! the spec and decodes to the same values when submitted again.
#![no_main]

use std::sync::OnceLock;

use guestpass::flow::attributes::{
    AttributeDefinition, AttributeValue, BuiltInAttribute, CollectedAttributes, DataType,
    ExtensionAttributeName, InputType, MAX_BODY_LEN, UserAttributeValue,
};
use guestpass::id::Id;
use libfuzzer_sys::fuzz_target;

fn ext(short: &str) -> ExtensionAttributeName {
    let app: Id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301".parse().unwrap();
    ExtensionAttributeName::new(app, short).unwrap()
}

fn choice(v: &str) -> UserAttributeValue {
    UserAttributeValue::new(v, v)
}

/// One attribute of every data type and input type.
fn spec() -> &'static CollectedAttributes {
    static SPEC: OnceLock<CollectedAttributes> = OnceLock::new();
    SPEC.get_or_init(|| {
        CollectedAttributes::new(vec![
            // string: textBox with limits and a pattern, emailBox, radio, dropdown
            AttributeDefinition::built_in(BuiltInAttribute::GivenName),
            AttributeDefinition::built_in(BuiltInAttribute::PostalCode)
                .optional()
                .length(Some(4), Some(7))
                .pattern("[0-9]{4} ?[A-Z]{0,2}"),
            AttributeDefinition::built_in(BuiltInAttribute::Email).optional(),
            AttributeDefinition::custom(ext("size"), DataType::String, "Size")
                .optional()
                .input(InputType::RadioSingleSelect)
                .choice(choice("s"))
                .choice(choice("m"))
                .choice(choice("l")),
            AttributeDefinition::built_in(BuiltInAttribute::Country)
                .optional()
                .input(InputType::DropdownSingleSelect)
                .choice(choice("NL"))
                .choice(choice("DE")),
            // int64: textBox, radio, dropdown
            AttributeDefinition::custom(ext("n"), DataType::Int64, "N").optional(),
            AttributeDefinition::custom(ext("tier"), DataType::Int64, "Tier")
                .optional()
                .input(InputType::RadioSingleSelect)
                .choice(choice("1"))
                .choice(choice("-2")),
            AttributeDefinition::custom(ext("seats"), DataType::Int64, "Seats")
                .optional()
                .input(InputType::DropdownSingleSelect)
                .choice(choice("10"))
                .choice(choice("100")),
            // boolean: checkbox (required, so must be checked), radio, dropdown
            AttributeDefinition::custom(ext("terms"), DataType::Boolean, "Terms"),
            AttributeDefinition::custom(ext("news"), DataType::Boolean, "News")
                .optional()
                .input(InputType::RadioSingleSelect)
                .choice(choice("true"))
                .choice(choice("false")),
            AttributeDefinition::custom(ext("vip"), DataType::Boolean, "VIP")
                .optional()
                .input(InputType::DropdownSingleSelect)
                .choice(choice("true")),
            // stringCollection: checkboxMultiSelect
            AttributeDefinition::custom(ext("topics"), DataType::StringCollection, "Topics")
                .optional()
                .choice(choice("a"))
                .choice(choice("b"))
                .choice(choice("c")),
            // dateTime: dateTimeDropdown
            AttributeDefinition::custom(ext("born"), DataType::DateTime, "Born").optional(),
        ])
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let spec = spec();
    let Ok(values) = spec.decode_form(data, &["csrf"]) else {
        return;
    };
    assert!(data.len() <= MAX_BODY_LEN);

    for a in spec.attributes() {
        if a.is_required() {
            assert!(
                values.get(a.name().as_str()).is_some(),
                "required {} missing",
                a.name()
            );
        }
    }
    let mut last = None;
    for (name, value) in values.iter() {
        let index = spec.attributes().iter().position(|a| a.name() == name);
        assert!(
            index.is_some() && last < index,
            "{name}: an attribute, in the spec's order"
        );
        last = index;
        let a = &spec.attributes()[index.unwrap()];
        assert_eq!(value.data_type(), a.data_type(), "{name}");
        let in_choices = |v: &str| a.choices().iter().any(|c| c.value == v);
        match value {
            AttributeValue::String(s) => {
                assert!(!s.is_empty() && s.trim() == s, "{name}: {s:?}");
                assert!(!s.chars().any(char::is_control), "{name}: {s:?}");
                if a.input_type().is_select() {
                    assert!(in_choices(s), "{name}: {s:?}");
                } else {
                    let n = s.chars().count();
                    assert!(n >= a.min_length() as usize, "{name}: {s:?}");
                    assert!(n <= a.max_length().unwrap() as usize, "{name}: {s:?}");
                    assert!(a.matches_pattern(s), "{name}: {s:?}");
                }
                if a.input_type() == InputType::EmailBox {
                    assert!(guestpass::email::EmailAddress::parse(s).is_ok(), "{name}: {s:?}");
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
                    .map(|s| a.choices().iter().position(|c| &c.value == s).unwrap())
                    .collect();
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "{name}: unique, in order"
                );
            }
            AttributeValue::DateTime(d) => assert!((1..=9999).contains(&d.year()), "{name}: {d}"),
            other => panic!("unexpected value {other:?}"),
        }
    }

    // Submitting the accepted values again gives the same values.
    let again = spec.decode_form(values.to_form_body().as_bytes(), &[]);
    assert_eq!(again.as_ref(), Ok(&values));
});
