"""Column expressions: `Column` and its code generation (`expr`, `expr_codegen`), Spark's
functions over Columns (`expr_functions`, `expr_strings`, `expr_time`, `expr_dates`,
`expr_collections`, `expr_json`, `expr_cast`, `expr_predicates`), SQL text (`expr_sql`,
`sql_parse`, `sql_functions`), and what they parse with Java's rules (`java_regex`,
`datetime_patterns`, `spark_datetime`)."""
