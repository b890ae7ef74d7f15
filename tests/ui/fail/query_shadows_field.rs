wecom_kf::endpoints!(relative_to = SourceFile, "query_shadows_field.toml");

fn main() {}
