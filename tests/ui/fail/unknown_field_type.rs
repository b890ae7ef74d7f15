wecom_kf::endpoints!(relative_to = SourceFile, "unknown_field_type.toml");

fn main() {}
