wecom_kf::endpoints!(relative_to = SourceFile, "get_field_not_query.toml");

fn main() {}
