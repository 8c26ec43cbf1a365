from setuptools import setup

setup(cffi_modules=["minigrad/_build.py:ffibuilder"])
