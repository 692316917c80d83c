package daemon

import (
	"net"
	"os"
	"strings"
)

// notifySystemd sends state to the service manager when it asked for notifications
// (systemd's Type=notify sets NOTIFY_SOCKET): READY=1, RELOADING=1, STOPPING=1,
// MAINPID=. Without NOTIFY_SOCKET it does nothing; a failure to send is not tlsd's.
func notifySystemd(state string) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
