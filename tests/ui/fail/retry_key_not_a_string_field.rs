wecom_kf::endpoints!(relative_to = SourceFile, "retry_key_not_a_string_field.toml");

fn main() {}
