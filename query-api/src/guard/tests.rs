use super::*;

const LIMITS: DocumentLimits = DocumentLimits {
    max_bytes: 1_000,
    max_tokens: 50,
    max_depth: 4,
    max_fields: 20,
};

fn check(query: &str) -> Result<(), Refusal> {
    scan(query, &LIMITS)?;
    let doc = parse_query(query).unwrap_or_else(|e| unreachable!("{query}: {e}"));
    measure(&doc, &LIMITS)
}

#[test]
fn tokens_are_counted_without_whitespace_commas_and_comments() {
    let limits = DocumentLimits {
        max_tokens: 8,
        ..LIMITS
    };
    // `{ a ( x : "s, t" ) }` is 8 tokens.
    assert_eq!(
        scan("{ a(x: \"s, t\") } # a comment, long", &limits),
        Ok(())
    );
    assert_eq!(scan(",,{ a(x: \"\"\"b\nc\"\"\") }\n\n", &limits), Ok(()));
    assert_eq!(scan("{ a(x: -1.5e3) }", &limits), Ok(()));
    assert_eq!(
        scan("{ a(x: -1.5e3) b }", &limits),
        Err(Refusal::TooManyTokens { limit: 8 })
    );
    // `{ ... F } fragment`: the spread is one token.
    assert_eq!(scan("{ ...F } fragment x y z", &limits), Ok(()));
    assert!(scan("{ ...F } fragment x y z w", &limits).is_err());
}

#[test]
fn long_documents_are_refused_before_parsing() {
    let long = format!("{{ {} }}", "a ".repeat(600));
    assert_eq!(
        scan(&long, &LIMITS),
        Err(Refusal::TooLong {
            bytes: long.len(),
            limit: 1_000
        })
    );
    assert_eq!(
        Refusal::TooManyTokens { limit: 1 }.code(),
        "QUERY_TOO_LARGE"
    );
}

#[test]
fn deep_brackets_are_refused_before_parsing() {
    let limit = bracket_limit(LIMITS.max_depth);
    let ok = format!("{}{}", "{a".repeat(limit), "}".repeat(limit));
    let limits = DocumentLimits {
        max_tokens: 10_000,
        ..LIMITS
    };
    assert_eq!(scan(&ok, &limits), Ok(()));
    let deep = format!("{{a{ok}}}");
    assert_eq!(scan(&deep, &limits), Err(Refusal::Brackets { limit }));
}

#[test]
fn depth_counts_fields_through_fragments() {
    assert_eq!(check("{ a { b { c { d } } } }"), Ok(()));
    assert_eq!(
        check("{ a { b { c { d { e } } } } }"),
        Err(Refusal::TooDeep { depth: 5, limit: 4 })
    );
    assert_eq!(
        check("{ a { ...F } } fragment F on T { b { c { d { e } } } }"),
        Err(Refusal::TooDeep { depth: 5, limit: 4 })
    );
    assert_eq!(
        check("{ a { ... on T { b { c { d } } } } }"),
        Ok(()),
        "an inline fragment is no field"
    );
}

#[test]
fn fields_are_counted_with_fragments_expanded() {
    // 4 spreads of F (5 fields each) and 2 more fields: 22.
    let over = "{ ...F ...F x: a { ...F } y: a { ...F } } fragment F on T { a b c d e }";
    assert_eq!(check(over), Err(Refusal::TooManyFields { limit: 20 }));
    assert_eq!(
        check("{ ...F ...F ...F } fragment F on T { a b c d e }"),
        Ok(())
    );
}

#[test]
fn a_fragment_bomb_is_measured_in_linear_time() {
    // Each fragment spreads the next twice: 2^40 fields expanded.
    let mut query = String::from("{ ...F0 }");
    for i in 0..40 {
        query.push_str(&format!(
            " fragment F{i} on T {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    query.push_str(" fragment F40 on T { a }");
    let limits = DocumentLimits {
        max_tokens: 10_000,
        max_bytes: 10_000,
        max_depth: MAX_DEPTH_LIMIT,
        ..LIMITS
    };
    let doc = parse_query(&query).unwrap_or_else(|e| unreachable!("{e}"));
    let started = std::time::Instant::now();
    assert_eq!(
        measure(&doc, &limits),
        Err(Refusal::TooManyFields { limit: 20 })
    );
    // Linear: microseconds; the expansion would take hours.
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn fragment_chains_count_as_nesting() {
    // Fragments spreading the next one, with no fields between: no depth, but nesting.
    let mut query = String::from("{ ...F0 }");
    for i in 0..20 {
        query.push_str(&format!(" fragment F{i} on T {{ ...F{} }}", i + 1));
    }
    query.push_str(" fragment F20 on T { a }");
    let limits = DocumentLimits {
        max_tokens: 10_000,
        ..LIMITS
    };
    let doc = parse_query(&query).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(measure(&doc, &limits), Err(Refusal::Nesting { limit: 8 }));
}

#[test]
fn fragment_cycles_are_refused() {
    let refusal = check("{ ...A } fragment A on T { ...B } fragment B on T { x { ...A } }");
    assert_eq!(
        refusal,
        Err(Refusal::Cycle {
            fragment: "A".to_owned()
        })
    );
    assert_eq!(
        refusal.map_err(|r| r.code()),
        Err("GRAPHQL_VALIDATION_FAILED")
    );
    // Unused, still a cycle.
    assert!(check("{ a } fragment A on T { ...A }").is_err());
}

#[test]
fn unknown_fragments_are_left_to_validation() {
    assert_eq!(check("{ ...Nowhere a }"), Ok(()));
}
