# Sourced by scripts/cluster.sh and bench/cluster_load.sh.
#
# serves PORT: true when the data server on 127.0.0.1:PORT stores 32 probe
# keys (which fall on every primary of a small cluster) and answers STORED
# for each. The metadata server lists a server as up when it joined; the
# server routes requests only once it has taken the map and set up its
# replication writers, and until then answers "SERVER_ERROR cluster map not
# available". A cluster is ready for clients when every server serves.
# The probe keys are deleted again.
serves() {
  local port=$1 n=0 i line
  exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  for i in $(seq 0 31); do printf 'set __ftm_probe_%d 0 0 1\r\np\r\n' "$i" >&3; done
  for i in $(seq 0 31); do
    IFS= read -r -t 5 line <&3 || break
    [ "$line" = $'STORED\r' ] && n=$((n + 1))
  done
  for i in $(seq 0 31); do printf 'delete __ftm_probe_%d noreply\r\n' "$i" >&3; done
  printf 'quit\r\n' >&3
  exec 3<&- 3>&-
  [ "$n" = 32 ]
}
