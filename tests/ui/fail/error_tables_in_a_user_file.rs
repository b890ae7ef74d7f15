wecom_kf::endpoints!(relative_to = SourceFile, "error_tables_in_a_user_file.toml");

fn main() {}
