"""Package metadata, read from settings.ini (nbdev 2 convention)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
c = cfg["DEFAULT"]
reqs = c.get("requirements", "").split()
dev_reqs = c.get("dev_requirements", "").split()
scripts = [s.strip() for s in c.get("console_scripts", "").split() if s.strip()]

setuptools.setup(
    name=c["lib_name"],
    version=c["version"],
    description=c["description"],
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    keywords=c["keywords"].split(),
    author=c["author"],
    author_email=c["author_email"],
    license="MIT",
    url=c["git_url"] % dict(user=c["user"], repo=c["repo"]) if "%" in c.get("git_url", "") else c["git_url"],
    classifiers=["Programming Language :: Python :: 3.11", "License :: OSI Approved :: MIT License"],
    packages=setuptools.find_packages(include=[c["lib_name"], c["lib_name"] + ".*"]),
    include_package_data=True,
    install_requires=reqs,
    extras_require={"dev": dev_reqs, **{t: c.get(f"{t}_requirements", "").split() for t in ("tensorboard", "trackio", "wandb")}},
    python_requires=">=" + c["min_python"],
    zip_safe=False,
    entry_points={"console_scripts": scripts, "nbdev": [f"{c['lib_name']}={c['lib_name']}._modidx:d"]},
)
