wecom_kf::endpoints!(relative_to = SourceFile, "one_of_unknown_field.toml");

fn main() {}
