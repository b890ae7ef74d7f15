wecom_kf::endpoints!(relative_to = SourceFile, "contradictory_limits.toml");

fn main() {}
