from scripts.readme import ROOT, render


def test_readme_tables_match_the_code() -> None:
    """The settings and firewall tables are generated; edit Pulumi.yaml or RULES, then run scripts/readme.py."""
    text = (ROOT / "README.md").read_text()
    assert render(text) == text
