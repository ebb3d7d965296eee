u_cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dest_addr = ('127.0.0.1', int(__import__('os').environ['UPECHOD_SEED_PORT']))
while True:
    msg = input("Type message > ")
    u_cli.sendto(msg.encode('utf-8'), dest_addr)
    res, _ = u_cli.recvfrom(1024)
    print(f"Got: {res}")
u_cli.close()
