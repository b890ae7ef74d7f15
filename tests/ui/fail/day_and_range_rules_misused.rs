wecom_kf::endpoints!(relative_to = SourceFile, "day_and_range_rules_misused.toml");

fn main() {}
