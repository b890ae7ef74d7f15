wecom_kf::endpoints!(relative_to = SourceFile, "toml_syntax.toml");

fn main() {}
