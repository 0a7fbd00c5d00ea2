package iamserver

const crashChildEnv = "IAMSERVER_CRASH_CHILD_DB"

func runCrashChild() int { return 0 }
