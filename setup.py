"""Packaging of the E3D plugin for mmengine + mmaction2.

Install torch first (``pip install torch==2.13.0`` on a CPU machine), then
``pip install -e .``. The pure-Python ``mmcv-lite`` is installed with the
plugin unless ``E3D_SKIP_MMCV_LITE=1`` is set, for users who already have a
compiled ``mmcv`` (< 2.2.0) and want to keep it.
"""
import os
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Return the requirement lines of ``requirements/<name>.txt``,
    following ``-r other.txt`` includes."""
    with open(osp.join(HERE, 'requirements', name + '.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        requirements = []
        for line in lines:
            if line.startswith('-r '):
                requirements += read_requirements(
                    osp.splitext(line[3:].strip())[0])
            elif line:
                requirements.append(line)
        return requirements


def read_version():
    """Read ``__version__`` from ``e3d_plugin/version.py`` without importing."""
    scope = {}
    with open(osp.join(HERE, 'e3d_plugin', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


install_requires = read_requirements('runtime')
if os.environ.get('E3D_SKIP_MMCV_LITE', '0') not in ('1', 'true', 'yes'):
    install_requires += read_requirements('mmcv')

setup(
    name='e3d_plugin',
    version=read_version(),
    description='E3D (ICLR 2023): spatio-temporal entropy search of efficient '
    '3D CNNs, as an mmengine / mmaction2 plugin',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['e3d_plugin', 'e3d_plugin.*']),
    package_data={'e3d_plugin': ['presets/*.txt', 'presets/*.json']},
    python_requires='>=3.8',
    install_requires=install_requires,
    extras_require={
        name: read_requirements(name)
        for name in ('tests', 'study', 'deploy', 'triton')
    },
    license='Apache-2.0',
    zip_safe=False,
)
