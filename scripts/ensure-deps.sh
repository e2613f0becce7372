#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ are reachable: start the local ones when they are
# installed but down, then wait for them. Skipped for a dependency given by URL.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  for _ in $(seq 1 "$3"); do port_open "$1" && return 0; sleep 1; done
  echo "error: $2 did not come up on 127.0.0.1:$1 within $3 s" >&2
  return 1
}

if [[ -z "${DATABASE_URL:-}" ]] && ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    echo "starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_port 5432 PostgreSQL 60
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; the tests will start it with testcontainers"
  else
    echo "error: PostgreSQL is neither reachable on 127.0.0.1:5432 nor installed (apt-get install postgresql), and no Docker engine runs" >&2
    exit 1
  fi
fi

if [[ -z "${AMQP_URL:-}" ]] && ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "starting RabbitMQ..."
    rabbitmq-server -detached || true
    wait_port 5672 RabbitMQ 90
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "RabbitMQ is not installed; the tests will start it with testcontainers"
  else
    echo "error: RabbitMQ is neither reachable on 127.0.0.1:5672 nor installed (apt-get install rabbitmq-server), and no Docker engine runs" >&2
    exit 1
  fi
fi
echo "PostgreSQL and RabbitMQ are reachable"
