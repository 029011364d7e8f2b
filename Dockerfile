# The tripwire image of docker-compose.yml: the package and its console script, nothing else.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY tripwire ./tripwire
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /src
WORKDIR /work
CMD ["tripwire", "--help"]
