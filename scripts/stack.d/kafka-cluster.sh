# shellcheck shell=bash
# A three-node Apache Kafka cluster in KRaft mode on 127.0.0.1, to see failover: every node is
# broker and controller (a combined quorum of three voters, so losing any one node keeps a
# majority), clients on the ports of $GALLERY_KAFKA_CLUSTER_PORTS, the quorum on those of
# $GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS (three each, comma separated). Every topic gets
# three replicas and needs two in sync for an acks=all write (min.insync.replicas=2), the
# transaction state log included. It uses the single broker's jars (kafka.sh) and runs beside
# it. Node N is named kafka-cluster-N (log/kafka-cluster-N.log, run/kafka-cluster-N.pid, its
# node.id is N); `up` starts whichever nodes are not running, so it also restarts a killed one.
# Sourced by scripts/stack.

KAFKA_CLUSTER_DATA="$STACK_DATA/kafka-cluster"
KAFKA_CLUSTER_NODES=(1 2 3)

# kafka_cluster_check_ports: dies unless both port lists name one port a node. Called first
# by every svc_kafka-cluster_* function, since a `die` inside $(...) would only end a subshell.
kafka_cluster_check_ports() {
  local list ports
  for list in "$GALLERY_KAFKA_CLUSTER_PORTS" "$GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS"; do
    IFS=, read -ra ports <<<"$list"
    [[ ${#ports[@]} -eq ${#KAFKA_CLUSTER_NODES[@]} && "$list" =~ ^[0-9]+(,[0-9]+)*$ ]] \
      || die "kafka-cluster: '$list' must name ${#KAFKA_CLUSTER_NODES[@]} ports, comma separated (GALLERY_KAFKA_CLUSTER_PORTS, GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS)"
  done
}

# kafka_cluster_port LIST N: the Nth (1-based) port of the comma-separated LIST.
kafka_cluster_port() {
  local ports
  IFS=, read -ra ports <<<"$1"
  echo "${ports[$2 - 1]}"
}

# kafka_cluster_addresses LIST [voters]: 127.0.0.1:PORT of every node, comma separated, with
# the ports of LIST; with a second argument as quorum voters (N@127.0.0.1:PORT).
kafka_cluster_addresses() {
  local n out=()
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    out+=("${2:+$n@}127.0.0.1:$(kafka_cluster_port "$1" "$n")")
  done
  (IFS=,; echo "${out[*]}")
}

svc_kafka-cluster_install() { svc_kafka_install; }

svc_kafka-cluster_start() {
  local n port controller_port id voters
  kafka_cluster_check_ports
  voters="$(kafka_cluster_addresses "$GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS" voters)"
  mkdir -p "$KAFKA_CLUSTER_DATA"
  # One cluster id for the three nodes, chosen once.
  [[ -s "$KAFKA_CLUSTER_DATA/cluster.id" ]] || kafka_new_cluster_id >"$KAFKA_CLUSTER_DATA/cluster.id"
  id="$(cat "$KAFKA_CLUSTER_DATA/cluster.id")"
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    port="$(kafka_cluster_port "$GALLERY_KAFKA_CLUSTER_PORTS" "$n")"
    controller_port="$(kafka_cluster_port "$GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS" "$n")"
    if ! kafka_node_check "kafka-cluster-$n" "$KAFKA_CLUSTER_DATA/$n" "$port" "$controller_port"; then
      log "kafka-cluster-$n: already started (pid $(cat "$STACK_RUN/kafka-cluster-$n.pid"))"
      continue
    fi
    kafka_node_config "$KAFKA_CLUSTER_DATA/$n" "$n" "$port" "$controller_port" "$voters" 3 2
    kafka_node_format "kafka-cluster-$n" "$KAFKA_CLUSTER_DATA/$n" "$id"
    kafka_node_run "kafka-cluster-$n" "$KAFKA_CLUSTER_DATA/$n" 512m
  done
}

# Ready when every node is: a node announces itself started only once the quorum has a leader.
svc_kafka-cluster_ready() {
  local n
  kafka_cluster_check_ports
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    kafka_node_ready "kafka-cluster-$n" "$(kafka_cluster_port "$GALLERY_KAFKA_CLUSTER_PORTS" "$n")" \
      || return 1
  done
}

# Starts every node that exited during its start once more (see kafka_node_recover); the
# others keep running.
svc_kafka-cluster_recover() {
  local n found=1
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    kafka_node_recover "kafka-cluster-$n" && found=0
  done
  return "$found"
}

svc_kafka-cluster_stop() {
  local n
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    forget_stale_pid "kafka-cluster-$n" "$KAFKA_PROC_PATTERN"
    stop_pid "kafka-cluster-$n"
  done
}

svc_kafka-cluster_where() {
  kafka_cluster_check_ports
  echo "kafka-cluster: $(kafka_cluster_addresses "$GALLERY_KAFKA_CLUSTER_PORTS") (bootstrap servers; 3 nodes, replication 3, min.insync.replicas 2)"
}
