"""polrl: policy optimization across the on-policy <-> off-policy spectrum, in JAX."""
import setuptools

setuptools.setup(
    name="polrl",
    version="0.1.0",
    description="JAX framework for policy optimization: RLVR, RLHF, preference learning, SFT+RL, control.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=setuptools.find_packages(include=["polrl", "polrl.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6",
        "flax>=0.12",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.8",
        "array_record>=0.7",
        "importlib_resources",
        "chex>=0.1.89",
        "ml-collections>=1.0",
        "absl-py",
        "numpy",
        "tqdm",
        "tensorboardX",
        "matplotlib",
        "gymnax>=1.0",
        "jaxmarl>=0.2",  # multi-agent MPE tasks (polrl.control.marl); installs beside jax 0.10 unchanged
        "safetensors",
        "tokenizers",
        "jinja2>=3.0",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbformat", "nbclient", "ipykernel"],
    },
)
