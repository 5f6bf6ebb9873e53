# SPDX-License-Identifier: Apache-2.0
# Bash completion for sqlock: subcommands and options, read from `sqlock --help` and
# `sqlock COMMAND --help` when Tab is pressed, so it always matches the installed binary.
# Installed as share/bash-completion/completions/sqlock (loaded on demand by bash-completion),
# or: source sqlock.bash

_sqlock_help_words() {  # $1: the binary, $2...: the command path; prints options, then commands
  "$@" --help 2>/dev/null | awk '
    /^Subcommands:/ { sub_ = 1; next }
    /^[^ ]/ { sub_ = 0 }
    sub_ && /^  [a-z]/ { print $1; next }
    /^  +-/ {
      n = split($0, f, /[ ,]+/)
      for (i = 1; i <= n; i++) if (f[i] ~ /^--?[A-Za-z][-A-Za-z]*$/) print f[i]
    }'
}

_sqlock() {
  local cur=${COMP_WORDS[COMP_CWORD]} bin=${COMP_WORDS[0]} i word
  local -a path=("$bin")
  # The subcommand path so far (e.g. `migrate up`): words that are commands of their parent.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    [[ $word == -- ]] && { COMPREPLY=($(compgen -c -- "$cur")); return; }
    [[ $word == -* ]] && continue
    if _sqlock_help_words "${path[@]}" | grep -qx -- "$word"; then path+=("$word"); fi
  done
  case ${COMP_WORDS[COMP_CWORD - 1]} in
    -o | --output) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
    --color) COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -W "$(_sqlock_help_words "${path[@]}")" -- "$cur"))
}
complete -F _sqlock sqlock
