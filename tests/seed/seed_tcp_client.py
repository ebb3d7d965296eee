import socket
# Create client socket
cli_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
target_host = '127.0.0.1'
target_port = int(__import__('os').environ['UPECHOD_SEED_PORT'])
# Initiate connection
cli_sock.connect((target_host, target_port))
# Transmit UTF-8 encoded string
msg = "hello"
cli_sock.send(msg.encode('utf-8'))
# Capture response
resp = cli_sock.recv(1024)
print(f"Server Reply: {resp.decode('utf-8')}")
cli_sock.close()
