from conftest import run_cli

from launchbay import __version__


def test_version_prints_the_package_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"launchbay, version {__version__}"


def test_help_describes_the_tool():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "Run ML jobs with launch-time overrides" in result.stdout
