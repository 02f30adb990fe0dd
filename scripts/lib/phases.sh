# shellcheck shell=bash
# Sourced by .ci/run and scripts/test.sh: where the time goes. `phase NAME` ends the running
# phase and starts the next, printing `[mm:ss] phase NAME` (time since the script started);
# `phases_summary` prints each phase's duration, and is meant for the script's EXIT trap so that
# a failed run says how far it got and how long each step took.

phases_label=${phases_label:-phase}
phases_started=$SECONDS
phases_names=()
phases_starts=()

phases_clock() { printf '%02d:%02d' $(($1 / 60)) $(($1 % 60)); }

phase() {
  phases_names+=("$*")
  phases_starts+=("$SECONDS")
  printf '[%s] %s %s\n' "$(phases_clock $((SECONDS - phases_started)))" "$phases_label" "$*"
}

phases_summary() {
  local count=${#phases_names[@]} i end
  ((count > 0)) || return 0
  echo "--- $phases_label times (mm:ss)"
  for ((i = 0; i < count; i++)); do
    end=${phases_starts[i + 1]:-$SECONDS}
    printf '  %s  %s\n' "$(phases_clock $((end - phases_starts[i])))" "${phases_names[i]}"
  done
  printf '  %s  total\n' "$(phases_clock $((SECONDS - phases_started)))"
}
