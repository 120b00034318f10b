import re

from setuptools import find_packages, setup

# The version lives in sieci/__init__.py alone (every command's --version prints it).
VERSION = re.search(r'^__version__ = "([^"]+)"', open("sieci/__init__.py", encoding="utf-8").read(), re.M)[1]

setup(
    name="sieci",
    version=VERSION,
    description="Run Python files on a pool of machines from the shell, and get their output back",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sieci", "sieci.*"]),
    package_data={"sieci.master": ["dashboard.html"]},
    python_requires=">=3.10",
    classifiers=[f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)],
    install_requires=["gevent>=22.10", "ConfigArgParse>=1.5", "prometheus_client>=0.14", "tqdm>=4.60",
                      "cloudpickle>=3.0,<4"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    scripts=["scripts/sieci-client"],
    entry_points={
        "console_scripts": [
            "sieci-master = sieci.main:master_main",
            "sieci-worker = sieci.main:worker_main",
            "sieci-cluster = sieci.main:cluster_main",
        ]
    },
)
