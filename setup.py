from setuptools import find_packages, setup

setup(
    name="tb-attention",
    version="0.1.0",
    description="Watch transformer attention change during training, in TensorBoard",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Visualization",
    ],
    packages=find_packages(include=["tb_attention", "tb_attention.*"]),
    package_data={"tb_attention": ["static/*"]},
    python_requires=">=3.9",
    install_requires=[
        "tensorboard>=2.21",
        "numpy",
        "protobuf",
        "werkzeug",
        "google-crc32c",
        "tqdm",
        "pillow",
    ],
    extras_require={
        # torch is deliberately unpinned here; the tests pin 2.13.0 (CPU build): README, Set-up, "PyTorch".
        "torch": ["torch", "transformers>=5"],
        # The Trainer callback needs the Trainer's own dependency; the Lightning callback needs Lightning.
        "trainer": ["torch", "transformers>=5", "accelerate>=1.1"],
        "lightning": ["torch", "lightning>=2.4"],
        # t-SNE layouts of the Q/K embedding view (PCA and the faithful layout need only numpy); docs/embedding.md
        "embedding": ["scikit-learn>=1.2"],
        # UMAP layouts (optional: numba/llvmlite, slow first import); docs/embedding.md
        "umap": ["umap-learn>=0.5"],
        # AttentionWriter("s3://…"/"gs://…") and `tb-attention checkpoints s3://…`; TensorBoard itself reads s3://
        # through boto3 (docs/scale.md, "Runs in the cloud")
        "s3": ["fsspec>=2023.1", "s3fs>=2023.1", "boto3"],
        "gcs": ["fsspec>=2023.1", "gcsfs>=2023.1"],
        # tba.show(logdir, live=True): steps read from the logdir while the kernel runs (docs/notebook.md); the
        # static notebook views need nothing beyond the notebook itself
        "live": ["anywidget>=0.9"],
    },
    entry_points={
        "tensorboard_plugins": ["attention = tb_attention.serve.loader:AttentionLoader"],
        "console_scripts": ["tb-attention = tb_attention.cli:main"],
    },
)
